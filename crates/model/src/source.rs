//! Model sources: what a `--model` / `--init-from` path (or preset name) holds, and loading it
//! with its config, weights, a description and the tokenizer it carries. Every front end asks
//! this module, so a run directory, a checkpoint, a Hugging Face directory, a llama2.c `.bin`
//! and a preset mean the same everywhere.

use std::path::{Path, PathBuf};

use anetrain_data::{Tokenizer, TokenizerSource};

use crate::config::{ModelConfig, PRESETS};
use crate::error::{ModelError, Result};
use crate::hf::load_hf_dir;
use crate::llama2c::read_llama2c;
use crate::lora::Adapter;
use crate::params::Params;
use crate::train::checkpoint::{resolve_checkpoint, CheckpointMeta, META_FILE};
use crate::train::{BaseRef, Checkpoint};

/// Where a model comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ModelSource {
    /// A run directory of `anetrain train` or `import`: its latest checkpoint, and the
    /// tokenizer the run keeps beside its checkpoints.
    Run(PathBuf),
    /// One `ckpt-*` directory (it has a `meta.json`); the tokenizer is its run's.
    Checkpoint(PathBuf),
    /// A Hugging Face directory (`config.json` and safetensors), with its `tokenizer.json`.
    HuggingFace(PathBuf),
    /// A llama2.c `.bin` checkpoint; it carries no tokenizer.
    Llama2c(PathBuf),
    /// A preset with seeded random weights, for trying a pipeline.
    Preset {
        /// A name from [`PRESETS`].
        name: String,
        /// The vocabulary to give it instead of the preset's (a tokenizer's size).
        vocab_size: Option<usize>,
    },
}

/// A model read from a [`ModelSource`].
#[derive(Clone)]
pub struct LoadedModel {
    /// Its shape.
    pub config: ModelConfig,
    /// Its weights.
    pub params: Params,
    /// What was read, for messages, e.g. `checkpoint run/ckpt-00000100 (step 100)`.
    pub description: String,
    /// The tokenizer the source carries, if any.
    pub tokenizer: Option<TokenizerSource>,
}

/// A tokenizer chosen for a model, with where it came from.
pub struct ModelTokenizer {
    /// Where it was loaded from (recorded in runs, copied into exports).
    pub source: TokenizerSource,
    /// The loaded tokenizer.
    pub tokenizer: Box<dyn Tokenizer>,
}

impl ModelSource {
    /// Reads `spec` as a path ([`ModelSource::from_path`]), or as a preset name when no such
    /// path exists.
    pub fn parse(spec: &str) -> Result<Self> {
        let path = Path::new(spec);
        if !path.exists() && PRESETS.contains(&spec) {
            return Ok(ModelSource::Preset {
                name: spec.to_string(),
                vocab_size: None,
            });
        }
        Self::from_path(path).map_err(|e| match e {
            ModelError::Input(m) => {
                ModelError::Input(format!("{m}, or a preset name ({})", PRESETS.join(", ")))
            }
            other => other,
        })
    }

    /// Classifies a path: a file is a llama2.c `.bin`; a directory with `config.json` is a
    /// Hugging Face model (which may carry a `meta.json` of its own, as the reference fixtures
    /// do); one with `meta.json` is a checkpoint; any other directory is a run.
    pub fn from_path(path: &Path) -> Result<Self> {
        if path.is_file() {
            Ok(ModelSource::Llama2c(path.to_path_buf()))
        } else if !path.exists() {
            Err(ModelError::Input(format!(
                "{} does not exist; pass a run directory, a checkpoint, a Hugging Face \
                 directory or a llama2.c .bin",
                path.display()
            )))
        } else if path.join("config.json").is_file() {
            Ok(ModelSource::HuggingFace(path.to_path_buf()))
        } else if path.join(META_FILE).is_file() {
            Ok(ModelSource::Checkpoint(path.to_path_buf()))
        } else {
            Ok(ModelSource::Run(path.to_path_buf()))
        }
    }

    /// The tokenizer this source carries, found without reading any weights: a
    /// `tokenizer.json` in the directory (for a checkpoint, in it or its run directory), else
    /// the byte tokenizer when the run recorded `byte`.
    pub fn tokenizer(&self) -> Result<Option<TokenizerSource>> {
        let (dirs, meta): (Vec<&Path>, Option<PathBuf>) = match self {
            ModelSource::HuggingFace(dir) => (vec![dir], None),
            ModelSource::Checkpoint(dir) => (
                dir.parent().into_iter().chain([dir.as_path()]).collect(),
                Some(dir.clone()),
            ),
            ModelSource::Run(dir) => (vec![dir], Some(resolve_checkpoint(dir)?)),
            ModelSource::Llama2c(_) | ModelSource::Preset { .. } => return Ok(None),
        };
        if let Some(found) = dirs.iter().rev().find_map(|d| TokenizerSource::in_dir(d)) {
            return Ok(Some(found));
        }
        let Some(ckpt) = meta else {
            return Ok(None);
        };
        let path = ckpt.join(META_FILE);
        let text = std::fs::read_to_string(&path).map_err(|e| ModelError::io(&path, e))?;
        let meta: CheckpointMeta = serde_json::from_str(&text)
            .map_err(|e| ModelError::format(&path, format!("not a valid meta.json: {e}")))?;
        Ok((meta.provenance.tokenizer.as_deref() == Some("byte")).then_some(TokenizerSource::Byte))
    }

    /// This source with a preset's vocabulary set to `vocab_size` (a given tokenizer's size,
    /// since random weights fit any tokenizer); other sources keep their own.
    pub fn with_preset_vocab(self, vocab_size: usize) -> Self {
        match self {
            ModelSource::Preset { name, .. } => ModelSource::Preset {
                name,
                vocab_size: Some(vocab_size),
            },
            other => other,
        }
    }

    /// The model's config alone: a preset's or a Hugging Face `config.json` without reading
    /// weights; the other forms load their weights to find it.
    pub fn config(&self) -> Result<ModelConfig> {
        Ok(match self {
            ModelSource::Preset { name, vocab_size } => {
                let mut config = ModelConfig::preset(name)?;
                if let Some(v) = vocab_size {
                    config.vocab_size = *v;
                }
                config
            }
            ModelSource::HuggingFace(dir) => ModelConfig::from_hf_dir(dir)?,
            other => other.load(0)?.config,
        })
    }

    /// The adapter of a LoRA run or checkpoint, with the base it belongs to (checked against
    /// the recorded hash); an error naming what the source is otherwise.
    pub fn lora_adapter(&self) -> Result<(Adapter, BaseRef)> {
        let not_lora = |what: &str| {
            ModelError::Input(format!(
                "{what} is not a LoRA run, so it has no adapter to export; export it with --format hf, or train one with `train --init-from BASE --lora-rank R`"
            ))
        };
        match self {
            ModelSource::Run(dir) | ModelSource::Checkpoint(dir) => {
                let ckpt = Checkpoint::load(&resolve_checkpoint(dir)?)?;
                match (ckpt.adapter, ckpt.meta.lora_base) {
                    (Some(adapter), Some(base)) => Ok((adapter, base)),
                    _ => Err(not_lora(&dir.display().to_string())),
                }
            }
            ModelSource::HuggingFace(p) | ModelSource::Llama2c(p) => {
                Err(not_lora(&p.display().to_string()))
            }
            ModelSource::Preset { name, .. } => Err(not_lora(name)),
        }
    }

    /// Loads the config and weights; `seed` draws a preset's random weights.
    pub fn load(&self, seed: u64) -> Result<LoadedModel> {
        let tokenizer = self.tokenizer()?;
        // A LoRA checkpoint is itself an adapter directory, applied to its base below.
        let mut lora_dir = None;
        let (config, params, description) = match self {
            ModelSource::Llama2c(path) => {
                let (config, params) = read_llama2c(path)?;
                (config, params, format!("llama2.c {}", path.display()))
            }
            ModelSource::HuggingFace(dir) => {
                let (config, params) = load_hf_dir(dir)?;
                (config, params, format!("Hugging Face {}", dir.display()))
            }
            ModelSource::Run(dir) | ModelSource::Checkpoint(dir) => {
                let dir = resolve_checkpoint(dir)?;
                let ckpt = Checkpoint::load(&dir)?;
                let mut description =
                    format!("checkpoint {} (step {})", dir.display(), ckpt.meta.step);
                if let Some(base) = &ckpt.meta.lora_base {
                    description = format!("base {} of LoRA {description}", base.path);
                    lora_dir = Some(dir.clone());
                }
                (ckpt.config, ckpt.params, description)
            }
            ModelSource::Preset { name, vocab_size } => {
                let mut config = ModelConfig::preset(name)?;
                if let Some(v) = vocab_size {
                    config.vocab_size = *v;
                }
                let params = Params::init(&config, seed)?;
                let description = format!(
                    "preset {name} (random weights, vocabulary {})",
                    config.vocab_size
                );
                (config, params, description)
            }
        };
        let mut model = LoadedModel {
            config,
            params,
            description,
            tokenizer,
        };
        if let Some(dir) = lora_dir {
            model.apply_adapter(&dir)?;
        }
        Ok(model)
    }
}

/// What [`LoadedModel::apply_adapter`] folded in.
#[derive(Debug)]
pub struct AppliedAdapter {
    /// The adapter as read (it fits the model it was applied to).
    pub adapter: Adapter,
    /// The format its directory was in.
    pub format: crate::lora::AdapterFormat,
}

impl LoadedModel {
    /// Reads the LoRA adapter in `dir` (PEFT or mlx-lm, detected from its files), checks that
    /// it fits this model (layers, targets, shapes; errors name the tensor or config field)
    /// and folds it into the weights once (`W += s·B·A`), so evaluation and generation run the
    /// plain fused model at the base model's speed. The description gains the adapter.
    pub fn apply_adapter(&mut self, dir: &Path) -> Result<AppliedAdapter> {
        if !dir.is_dir() {
            return Err(ModelError::Input(format!(
                "adapter {} is not a directory; pass the directory holding adapter_config.json",
                dir.display()
            )));
        }
        let (adapter, format) = crate::lora::load_adapter(dir, &self.config)?;
        adapter.fuse_into(&mut self.params)?;
        self.description = format!(
            "{} + {} adapter {} (rank {}, {} projections)",
            self.description,
            format.label(),
            dir.display(),
            adapter.config().rank,
            adapter.modules().count()
        );
        Ok(AppliedAdapter { adapter, format })
    }

    /// The tokenizer to use: `flag` when given, else the one the model carries, else none.
    /// One that has more tokens than the model's vocabulary is an error, never a silent
    /// fallback.
    pub fn tokenizer(&self, flag: Option<&TokenizerSource>) -> Result<Option<ModelTokenizer>> {
        let Some(source) = flag.or(self.tokenizer.as_ref()) else {
            return Ok(None);
        };
        let tokenizer = source.open()?;
        check_tokenizer_fits(tokenizer.as_ref(), source, &self.config)?;
        Ok(Some(ModelTokenizer {
            source: source.clone(),
            tokenizer,
        }))
    }
}

/// Refuses a tokenizer whose ids do not all fit the model's vocabulary (a model may have more
/// ids than its tokenizer: vocabularies are often padded).
pub fn check_tokenizer_fits(
    tokenizer: &dyn Tokenizer,
    source: &TokenizerSource,
    config: &ModelConfig,
) -> Result<()> {
    if tokenizer.vocab_size() > config.vocab_size {
        return Err(ModelError::Input(format!(
            "the tokenizer `{}` has {} tokens but the model's vocabulary has {}; pass the \
             --tokenizer the model was trained with",
            source.spec(),
            tokenizer.vocab_size(),
            config.vocab_size
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_names_are_classified() {
        let dir = tempfile::tempdir().unwrap();
        let hf = dir.path().join("hf");
        std::fs::create_dir(&hf).unwrap();
        std::fs::write(hf.join("config.json"), "{}").unwrap();
        let ckpt = dir.path().join("ckpt-00000001");
        std::fs::create_dir(&ckpt).unwrap();
        std::fs::write(ckpt.join(META_FILE), "{}").unwrap();
        let bin = dir.path().join("m.bin");
        std::fs::write(&bin, [0u8; 4]).unwrap();
        let parse = |p: &Path| ModelSource::parse(p.to_str().unwrap()).unwrap();
        assert_eq!(parse(&hf), ModelSource::HuggingFace(hf.clone()));
        assert_eq!(parse(&ckpt), ModelSource::Checkpoint(ckpt.clone()));
        assert_eq!(parse(&bin), ModelSource::Llama2c(bin.clone()));
        assert_eq!(parse(dir.path()), ModelSource::Run(dir.path().into()));
        assert_eq!(
            ModelSource::parse("tiny").unwrap(),
            ModelSource::Preset {
                name: "tiny".into(),
                vocab_size: None
            }
        );
        let e = ModelSource::parse("no/such/model").unwrap_err().to_string();
        assert!(
            e.contains("does not exist") && e.contains("stories15M"),
            "{e}"
        );
    }

    #[test]
    fn an_applied_adapter_is_fused_once_and_must_fit_the_model() {
        use crate::lora::{save_adapter, AdapterFormat, LoraConfig};
        let dir = tempfile::tempdir().unwrap();
        let source = ModelSource::Preset {
            name: "tiny".into(),
            vocab_size: None,
        };
        let base = source.load(3).unwrap();
        let mut adapter = Adapter::init(LoraConfig::default(), &base.config, 5).unwrap();
        let keys: Vec<_> = adapter.modules().map(|(k, _)| k).collect();
        for (layer, target) in keys {
            adapter
                .get_mut(layer, target)
                .unwrap()
                .b
                .data_mut()
                .fill(0.01);
        }
        let adapter_dir = dir.path().join("adapter");
        save_adapter(&adapter_dir, AdapterFormat::Mlx, &adapter, "tiny").unwrap();

        let mut model = source.load(3).unwrap();
        let applied = model.apply_adapter(&adapter_dir).unwrap();
        assert_eq!(applied.format, AdapterFormat::Mlx);
        let mut expected = base.params.clone();
        adapter.fuse_into(&mut expected).unwrap();
        assert_eq!(model.params, expected);
        assert_ne!(model.params, base.params);
        assert!(
            model.description.contains("mlx-lm adapter"),
            "{}",
            model.description
        );

        let err = source
            .load(3)
            .unwrap()
            .apply_adapter(&dir.path().join("none"));
        assert!(err.unwrap_err().to_string().contains("is not a directory"));
        let mut other = ModelSource::Preset {
            name: "tiny-qwen3".into(),
            vocab_size: None,
        }
        .load(3)
        .unwrap();
        let err = other.apply_adapter(&adapter_dir).unwrap_err().to_string();
        assert!(
            err.contains("lora_a") && err.contains("different base"),
            "{err}"
        );
    }

    #[test]
    fn a_checkpoint_uses_its_run_directorys_tokenizer() {
        let dir = tempfile::tempdir().unwrap();
        let ckpt = dir.path().join("ckpt-00000001");
        std::fs::create_dir(&ckpt).unwrap();
        std::fs::write(dir.path().join("tokenizer.json"), "{}").unwrap();
        let found = ModelSource::Checkpoint(ckpt).tokenizer().unwrap();
        assert_eq!(
            found,
            Some(TokenizerSource::File(dir.path().join("tokenizer.json")))
        );
    }
}
