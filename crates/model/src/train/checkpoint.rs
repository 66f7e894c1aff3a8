//! Training checkpoints: one directory per saved step inside a run directory,
//!
//! ```text
//! RUN_DIR/ckpt-00000300/model.safetensors      weights, Hugging Face names, F32
//!                      /optimizer.safetensors  optimizer state, F32 or BF16 as the run keeps
//!                                              it (absent for imported weights)
//!                      /meta.json              config, step, data position, scaler, options
//! ```
//!
//! A LoRA run's checkpoint holds no base weights: `adapter_config.json` and
//! `adapter_model.safetensors` in PEFT's format (so the directory is itself an adapter other
//! tools load), the adapter's optimizer state, and in `meta.json` the base's path and content
//! hash ([`BaseRef`]), checked whenever the checkpoint is loaded.
//!
//! Writes are atomic: everything goes into `RUN_DIR/.tmp-ckpt-…`, every file and the directory
//! are fsynced, and only then is the directory renamed to its final name (and the run directory
//! fsynced), so a crash at any point leaves either the complete new checkpoint or none of it,
//! and never touches the previous ones. The latest checkpoint is the complete `ckpt-*` with the
//! highest step, found by scanning; retention keeps the last N plus the best validation loss.

use std::fs::File;
use std::path::{Path, PathBuf};

use anetrain_data::SamplerState;
use serde::{Deserialize, Serialize};

use super::base_ref::BaseRef;
use super::loss_scale::LossScaler;
use super::optimizer::Optimizer;
use super::options::TrainOptions;
use crate::config::ModelConfig;
use crate::error::{ModelError, Result};
use crate::hf::{write_safetensors, write_stored, SafetensorsFile};
use crate::lora::{load_adapter, save_adapter, Adapter, AdapterFormat};
use crate::params::{ParamSet, Params};

/// Weights file inside a checkpoint directory.
pub const MODEL_FILE: &str = "model.safetensors";
/// Optimizer-state file inside a checkpoint directory.
pub const OPTIMIZER_FILE: &str = "optimizer.safetensors";
/// Metadata file inside a checkpoint directory.
pub const META_FILE: &str = "meta.json";
/// Version of the layout above; bumped on incompatible changes.
pub const FORMAT_VERSION: u32 = 1;

const PREFIX: &str = "ckpt-";
const TMP_PREFIX: &str = ".tmp-ckpt-";

/// Where training stood when a checkpoint was written: with the tensors, all a resumed run
/// needs to continue bit-identically.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainState {
    /// The run's settings.
    pub options: TrainOptions,
    /// Position of the training sampler (the data order itself follows from the seed).
    pub sampler: SamplerState,
    /// Loss-scaler state.
    pub loss_scaler: LossScaler,
    /// Samples per epoch of the training data; a resumed run must see the same number, or its
    /// data (or split) differs and the sample order would silently change.
    pub train_samples: usize,
    /// Optimizer updates applied (differs from the step count by the skipped steps).
    pub optimizer_updates: u64,
    /// Training tokens consumed.
    pub tokens_seen: u64,
    /// Wall-clock seconds of training so far.
    pub elapsed_secs: f64,
    /// Validation loss at this step, if evaluated.
    pub val_loss: Option<f32>,
    /// Lowest validation loss of the run so far.
    pub best_val_loss: Option<f32>,
}

/// The contents of `meta.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CheckpointMeta {
    /// [`FORMAT_VERSION`] of the writer.
    pub format_version: u32,
    /// Optimizer steps completed.
    pub step: u64,
    /// The model configuration as a Hugging Face `config.json` object.
    pub config: serde_json::Value,
    /// Training state; `None` for weights imported from elsewhere.
    pub train: Option<TrainState>,
    /// Where the run's tokens came from; empty for imported weights.
    #[serde(default)]
    pub provenance: DataProvenance,
    /// For a LoRA run, the frozen base the adapter in this checkpoint belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lora_base: Option<BaseRef>,
}

/// The data flags of a run as the user spelled them, recorded so `--resume` continues on the
/// same data and `eval` can default to it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DataProvenance {
    /// `--data`.
    pub data: Option<String>,
    /// `--tokenizer`.
    pub tokenizer: Option<String>,
    /// `--val-data`, if validation data was separate.
    pub val_data: Option<String>,
    /// `--val-fraction`, if validation was held out of the training data.
    pub val_fraction: Option<f64>,
    /// `--mask-prompt`: only completion / assistant tokens of fine-tuning examples count.
    #[serde(default)]
    pub mask_prompt: bool,
}

/// A loaded checkpoint: its metadata, config and weights (optimizer state loads on demand).
pub struct Checkpoint {
    /// The checkpoint directory.
    pub dir: PathBuf,
    /// Its metadata.
    pub meta: CheckpointMeta,
    /// The model configuration.
    pub config: ModelConfig,
    /// The weights (of a LoRA run: the base's, loaded from where the run recorded it).
    pub params: Params,
    /// A LoRA run's adapter on `params`.
    pub adapter: Option<Adapter>,
}

impl Checkpoint {
    /// Loads the checkpoint in `dir`, checking the weights against the stored config.
    pub fn load(dir: &Path) -> Result<Self> {
        let meta_path = dir.join(META_FILE);
        let text =
            std::fs::read_to_string(&meta_path).map_err(|e| ModelError::io(&meta_path, e))?;
        let meta: CheckpointMeta = serde_json::from_str(&text).map_err(|e| {
            ModelError::format(&meta_path, format!("not a valid checkpoint meta.json: {e}"))
        })?;
        if meta.format_version != FORMAT_VERSION {
            return Err(ModelError::format(
                &meta_path,
                format!(
                    "checkpoint format {} is not the {FORMAT_VERSION} this anetrain reads; use the anetrain version that wrote it",
                    meta.format_version
                ),
            ));
        }
        if let Some(named) = step_of_name(dir) {
            if named != meta.step {
                return Err(ModelError::format(
                    &meta_path,
                    format!(
                        "records step {} but its directory is named for step {named}; the checkpoint was renamed or its meta.json replaced: restore the original or delete the directory",
                        meta.step
                    ),
                ));
            }
        }
        let config = ModelConfig::from_hf_json(&meta.config.to_string())
            .map_err(|e| ModelError::format(&meta_path, e.to_string()))?;
        if let Some(base) = &meta.lora_base {
            let (adapter, _) = load_adapter(dir, &config)?;
            if meta.train.is_some() {
                SafetensorsFile::open(&dir.join(OPTIMIZER_FILE))?;
            }
            let params = base.load(&config, dir)?;
            return Ok(Checkpoint {
                dir: dir.to_path_buf(),
                meta,
                config,
                params,
                adapter: Some(adapter),
            });
        }
        let weights = SafetensorsFile::open(&dir.join(MODEL_FILE))?;
        weights.check_tensors(&config)?;
        if meta.train.is_some() {
            // Only the header: a truncated or missing optimizer file makes the checkpoint
            // unusable for --resume, which should learn it now rather than after loading.
            SafetensorsFile::open(&dir.join(OPTIMIZER_FILE))?;
        }
        let mut params = Params::try_zeros(&config)?;
        for (name, mut t) in params.iter_mut() {
            weights.read_into(&name, &mut t)?;
        }
        params.check_finite(&dir.join(MODEL_FILE).display().to_string())?;
        Ok(Checkpoint {
            dir: dir.to_path_buf(),
            meta,
            config,
            params,
            adapter: None,
        })
    }

    /// The optimizer saved with this checkpoint; an error if it holds weights only.
    pub fn load_optimizer(&self) -> Result<Optimizer> {
        self.load_optimizer_for(&self.params)
    }

    /// The optimizer saved with this checkpoint over `params` (the model's weights, or a LoRA
    /// run's adapter); an error if it holds weights only.
    pub fn load_optimizer_for<P: ParamSet>(&self, params: &P) -> Result<Optimizer<P>> {
        let Some(train) = &self.meta.train else {
            return Err(ModelError::format(
                &self.dir,
                "this checkpoint holds imported weights without training state; start a new run from it with --init-from instead of --resume",
            ));
        };
        let file = SafetensorsFile::open(&self.dir.join(OPTIMIZER_FILE))?;
        Optimizer::restore(
            train.options.optimizer,
            params,
            train.optimizer_updates,
            &file,
        )
    }

    /// Fails, naming every differing field, unless this checkpoint's config is `expected`.
    pub fn check_config(&self, expected: &ModelConfig) -> Result<()> {
        match config_differences(expected, &self.config).as_slice() {
            [] => Ok(()),
            diffs => Err(ModelError::Config(format!(
                "checkpoint {} was trained with a different model: {}; use the checkpoint's own config (drop --model) or start a new run",
                self.dir.display(),
                diffs.join(", ")
            ))),
        }
    }
}

/// A checkpoint directory of a run that could not be loaded, and why.
#[derive(Debug)]
pub struct Unusable {
    /// The checkpoint directory.
    pub dir: PathBuf,
    /// The load error.
    pub reason: ModelError,
}

/// Loads the newest checkpoint of `run_dir` that loads completely, with the newer ones that did
/// not (newest first) so the caller can say what was skipped and why. An error lists every
/// reason when none loads.
pub fn load_latest_intact(run_dir: &Path) -> Result<(Checkpoint, Vec<Unusable>)> {
    let mut skipped = Vec::new();
    for (_, dir) in list_checkpoints(run_dir)?.into_iter().rev() {
        match Checkpoint::load(&dir) {
            Ok(ckpt) => return Ok((ckpt, skipped)),
            Err(reason) => skipped.push(Unusable { dir, reason }),
        }
    }
    if skipped.is_empty() {
        return Err(resolve_checkpoint(run_dir)
            .err()
            .unwrap_or_else(|| ModelError::format(run_dir, "holds no checkpoint to resume from")));
    }
    let reasons: Vec<String> = skipped.iter().map(|u| u.reason.to_string()).collect();
    Err(ModelError::format(
        run_dir,
        format!(
            "no checkpoint here loads: {}; start a new run with another --out",
            reasons.join("; ")
        ),
    ))
}

/// Renames an unusable checkpoint to `ckpt-N.broken`, out of the way of the run that resumes
/// before it (which will save step N again) but kept for inspection. Returns the new name.
pub fn set_aside(dir: &Path) -> Result<PathBuf> {
    let mut name = dir.file_name().unwrap_or_default().to_os_string();
    name.push(".broken");
    let mut dst = dir.with_file_name(&name);
    let mut n = 1;
    while dst.exists() {
        let mut numbered = name.clone();
        numbered.push(format!(".{n}"));
        dst = dir.with_file_name(numbered);
        n += 1;
    }
    std::fs::rename(dir, &dst).map_err(|e| ModelError::io(dir, e))?;
    Ok(dst)
}

/// Refuses an `--out` that is a checkpoint directory or lies inside one: a run written there
/// would mix its files with the checkpoint's (and retention could delete it).
pub fn check_run_dir(out: &Path) -> Result<()> {
    let abs = std::path::absolute(out).map_err(|e| ModelError::io(out, e))?;
    for dir in abs.ancestors() {
        if step_of_name(dir).is_some() || (dir == abs && dir.join(META_FILE).is_file()) {
            let parent = dir.parent().unwrap_or(dir);
            return Err(ModelError::Options(format!(
                "--out {} is inside the checkpoint {}; pass the run directory {} (with --resume to continue it) or a new directory",
                out.display(),
                dir.display(),
                parent.display()
            )));
        }
    }
    Ok(())
}

/// The step a `ckpt-N` directory name stands for, if `dir` is a checkpoint by name.
fn step_of_name(dir: &Path) -> Option<u64> {
    dir.file_name()?
        .to_str()?
        .strip_prefix(PREFIX)?
        .parse()
        .ok()
}

/// Fields whose values differ between two configs, as `field: expected X, found Y`.
pub fn config_differences(expected: &ModelConfig, found: &ModelConfig) -> Vec<String> {
    macro_rules! fields {
        ($($field:ident),*) => {
            [$((stringify!($field), format!("{:?}", expected.$field), format!("{:?}", found.$field))),*]
        };
    }
    fields!(
        family,
        dim,
        n_layers,
        n_heads,
        n_kv_heads,
        head_dim,
        hidden_dim,
        vocab_size,
        max_seq_len,
        rope_theta,
        norm_eps,
        tied_embeddings,
        qk_norm
    )
    .into_iter()
    .filter(|(_, a, b)| a != b)
    .map(|(field, a, b)| format!("{field}: expected {a}, found {b}"))
    .collect()
}

/// The directory name of the checkpoint of `step`; zero-padded so names sort by step.
pub fn checkpoint_name(step: u64) -> String {
    format!("{PREFIX}{step:08}")
}

/// Writes a checkpoint of `step` into `run_dir` atomically and returns its directory. Fails
/// without touching anything else if a checkpoint of that step already exists.
pub fn save_checkpoint(
    run_dir: &Path,
    params: &Params,
    optimizer: Option<&Optimizer>,
    meta: &CheckpointMeta,
) -> Result<PathBuf> {
    save_with(run_dir, meta, |tmp| {
        write_safetensors(&tmp.join(MODEL_FILE), params.iter())?;
        if let Some(opt) = optimizer {
            write_stored(&tmp.join(OPTIMIZER_FILE), opt.named_state())?;
        }
        Ok(())
    })
}

/// [`save_checkpoint`] for a LoRA run: the adapter in PEFT's format and its optimizer state,
/// no base weights; `meta.lora_base` must name the base.
pub fn save_adapter_checkpoint(
    run_dir: &Path,
    adapter: &Adapter,
    optimizer: &Optimizer<Adapter>,
    meta: &CheckpointMeta,
) -> Result<PathBuf> {
    let Some(base) = &meta.lora_base else {
        return Err(ModelError::Internal(
            "an adapter checkpoint needs the base reference in its metadata".into(),
        ));
    };
    save_with(run_dir, meta, |tmp| {
        save_adapter(tmp, AdapterFormat::Peft, adapter, &base.path)?;
        write_stored(&tmp.join(OPTIMIZER_FILE), optimizer.named_state())
    })
}

/// Writes the checkpoint of `meta.step`: `write` fills the temporary directory with the
/// tensors, then the metadata is added and the directory renamed into place.
fn save_with(
    run_dir: &Path,
    meta: &CheckpointMeta,
    write: impl FnOnce(&Path) -> Result<()>,
) -> Result<PathBuf> {
    std::fs::create_dir_all(run_dir).map_err(|e| ModelError::io(run_dir, e))?;
    let name = checkpoint_name(meta.step);
    let dst = run_dir.join(&name);
    if dst.exists() {
        return Err(ModelError::format(
            &dst,
            "a checkpoint of this step already exists; it is left untouched (resume from it with --resume, or pick a new --out)",
        ));
    }
    let tmp = run_dir.join(format!("{TMP_PREFIX}{}-{}", meta.step, std::process::id()));
    let written = write_dir(&tmp, meta, write).and_then(|()| {
        std::fs::rename(&tmp, &dst).map_err(|e| ModelError::io(&dst, e))?;
        sync_dir(run_dir)
    });
    if let Err(e) = written {
        // Best effort: the temporary directory is invisible to loaders either way.
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e);
    }
    Ok(dst)
}

fn write_dir(
    tmp: &Path,
    meta: &CheckpointMeta,
    write: impl FnOnce(&Path) -> Result<()>,
) -> Result<()> {
    std::fs::create_dir_all(tmp).map_err(|e| ModelError::io(tmp, e))?;
    write(tmp)?;
    let meta_path = tmp.join(META_FILE);
    let text = serde_json::to_string_pretty(meta)
        .map_err(|e| ModelError::format(&meta_path, format!("cannot encode metadata: {e}")))?;
    std::fs::write(&meta_path, text).map_err(|e| ModelError::io(&meta_path, e))?;
    sync_file(&meta_path)?;
    sync_dir(tmp)
}

/// Writes named F32 tensors to a safetensors file and fsyncs it.
fn sync_file(path: &Path) -> Result<()> {
    File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(|e| ModelError::io(path, e))
}

/// Makes a directory's entries (a new file, a rename) durable.
fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(|e| ModelError::io(dir, e))
}

/// The complete checkpoints of `run_dir` as `(step, dir)`, oldest first. Temporary directories
/// of interrupted saves are ignored; a missing run directory has none.
pub fn list_checkpoints(run_dir: &Path) -> Result<Vec<(u64, PathBuf)>> {
    let entries = match std::fs::read_dir(run_dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(ModelError::io(run_dir, e)),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| ModelError::io(run_dir, e))?;
        let Some(step) = step_of_name(&entry.path()) else {
            continue;
        };
        if entry.path().join(META_FILE).is_file() {
            out.push((step, entry.path()));
        }
    }
    out.sort();
    Ok(out)
}

/// The latest complete checkpoint of `run_dir`, if any.
pub fn latest_checkpoint(run_dir: &Path) -> Result<Option<PathBuf>> {
    Ok(list_checkpoints(run_dir)?.pop().map(|(_, dir)| dir))
}

/// `path` itself if it is a checkpoint directory, else the latest checkpoint of the run
/// directory `path`; an error that says what was expected otherwise.
pub fn resolve_checkpoint(path: &Path) -> Result<PathBuf> {
    if path.join(META_FILE).is_file() {
        return Ok(path.to_path_buf());
    }
    latest_checkpoint(path)?.ok_or_else(|| {
        ModelError::format(
            path,
            "holds no checkpoint (no meta.json, no ckpt-* directory); pass a run directory written by `anetrain train` or `anetrain import`, or a ckpt-* directory inside one",
        )
    })
}

/// Deletes old checkpoints, keeping the `keep_last` most recent and the one with the lowest
/// validation loss; also removes leftovers of interrupted saves. Returns what was deleted.
pub fn apply_retention(run_dir: &Path, keep_last: usize) -> Result<Vec<PathBuf>> {
    let all = list_checkpoints(run_dir)?;
    let best = all
        .iter()
        .filter_map(|(_, dir)| Some((read_val_loss(dir)?, dir)))
        .min_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, dir)| dir.clone());
    let keep_from = all.len().saturating_sub(keep_last.max(1));
    let mut removed = Vec::new();
    for (_, dir) in &all[..keep_from] {
        if Some(dir) != best.as_ref() {
            std::fs::remove_dir_all(dir).map_err(|e| ModelError::io(dir, e))?;
            removed.push(dir.clone());
        }
    }
    for entry in std::fs::read_dir(run_dir).map_err(|e| ModelError::io(run_dir, e))? {
        let entry = entry.map_err(|e| ModelError::io(run_dir, e))?;
        // Called after a save completed, so any temporary directory is a crash's leftover.
        let is_leftover = entry
            .file_name()
            .to_str()
            .is_some_and(|n| n.starts_with(TMP_PREFIX));
        if is_leftover {
            std::fs::remove_dir_all(entry.path()).map_err(|e| ModelError::io(entry.path(), e))?;
            removed.push(entry.path());
        }
    }
    Ok(removed)
}

/// The validation loss recorded in a checkpoint's metadata, if any (unreadable metadata counts
/// as none: retention must never fail because of one odd directory).
fn read_val_loss(dir: &Path) -> Option<f32> {
    let text = std::fs::read_to_string(dir.join(META_FILE)).ok()?;
    let meta: CheckpointMeta = serde_json::from_str(&text).ok()?;
    meta.train?.val_loss
}
