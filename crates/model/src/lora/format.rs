//! What PEFT and mlx-lm adapters share: an `adapter_config.json` beside one safetensors file of
//! `A`/`B` matrices; reading either format, and writing both atomically.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::Path;
use std::str::FromStr;

use serde_json::Value;

use super::adapter::Adapter;
use super::config::{LoraConfig, Target};
use super::linear::LoraLinear;
use super::{mlx, peft};
use crate::config::ModelConfig;
use crate::error::{ModelError, Result};
use crate::hf::{write_safetensors, SafetensorsFile};
use crate::params::Tensor;

/// The adapter's config file, in both formats.
pub const CONFIG_FILE: &str = "adapter_config.json";

/// An on-disk adapter layout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AdapterFormat {
    /// Hugging Face PEFT: `adapter_model.safetensors`, `A [r, in]`, `B [out, r]`.
    Peft,
    /// mlx-lm: `adapters.safetensors`, `lora_a [in, r]`, `lora_b [r, out]`.
    Mlx,
}

/// What sets one on-disk format apart, as data: its weights file, its tensor names and
/// layout, and how its config fields map to a [`LoraConfig`] and back.
pub(crate) struct FormatSpec {
    /// The safetensors file beside `adapter_config.json`.
    pub weights_file: &'static str,
    /// The tensor names and whether they are stored transposed.
    pub naming: Naming,
    /// The [`LoraConfig`] of a config file for the base `model`; fields anetrain cannot apply
    /// faithfully are errors naming them.
    pub read_config: fn(dir: &Path, config: &Value, model: &ModelConfig) -> Result<LoraConfig>,
    /// The config file of `adapter`, recording `base_model` as its base.
    pub write_config: fn(adapter: &Adapter, base_model: &str) -> Value,
}

impl AdapterFormat {
    /// What sets this format apart.
    fn spec(self) -> &'static FormatSpec {
        match self {
            AdapterFormat::Peft => &peft::FORMAT,
            AdapterFormat::Mlx => &mlx::FORMAT,
        }
    }

    /// The weights file of this format.
    pub fn weights_file(self) -> &'static str {
        self.spec().weights_file
    }

    /// How users name the format, e.g. `PEFT`.
    pub fn label(self) -> &'static str {
        match self {
            AdapterFormat::Peft => "PEFT",
            AdapterFormat::Mlx => "mlx-lm",
        }
    }

    /// The format of the adapter in `dir`, from which weights file it holds.
    pub fn detect(dir: &Path) -> Result<Self> {
        if !dir.join(CONFIG_FILE).is_file() {
            return Err(ModelError::format(
                dir,
                format!(
                    "no {CONFIG_FILE} here; pass a PEFT or mlx-lm adapter directory \
                     ({CONFIG_FILE} plus {} or {})",
                    AdapterFormat::Peft.weights_file(),
                    AdapterFormat::Mlx.weights_file()
                ),
            ));
        }
        for format in [AdapterFormat::Peft, AdapterFormat::Mlx] {
            if dir.join(format.weights_file()).is_file() {
                return Ok(format);
            }
        }
        Err(ModelError::format(
            dir,
            format!(
                "{CONFIG_FILE} but neither {} (PEFT) nor {} (mlx-lm) is here; copy the adapter's \
                 weights file next to its config",
                AdapterFormat::Peft.weights_file(),
                AdapterFormat::Mlx.weights_file()
            ),
        ))
    }
}

impl FromStr for AdapterFormat {
    type Err = ModelError;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "peft" => Ok(AdapterFormat::Peft),
            "mlx" => Ok(AdapterFormat::Mlx),
            _ => Err(ModelError::Config(format!(
                "unknown adapter format `{s}`; use `peft` or `mlx`"
            ))),
        }
    }
}

/// Reads the adapter in `dir` (either format) for the base `model`, with the format found.
pub fn load_adapter(dir: &Path, model: &ModelConfig) -> Result<(Adapter, AdapterFormat)> {
    let format = AdapterFormat::detect(dir)?;
    let spec = format.spec();
    let config = (spec.read_config)(dir, &read_config(dir)?, model)?;
    let pairs = read_pairs(dir, spec.weights_file, &spec.naming, config.scale())?;
    let adapter = Adapter::from_modules(config, model, pairs, &|l, t| {
        spec.naming.name(l, t, Half::A)
    })?;
    Ok((adapter, format))
}

/// Writes `adapter` to `dir` in `format`; `base_model` (a path or hub name) is recorded as the
/// base it belongs to. Existing files are replaced only once the new ones are complete.
pub fn save_adapter(
    dir: &Path,
    format: AdapterFormat,
    adapter: &Adapter,
    base_model: &str,
) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| ModelError::io(dir, e))?;
    let spec = format.spec();
    let config = (spec.write_config)(adapter, base_model);
    let tensors = write_pairs(adapter, &spec.naming);
    let weights = dir.join(format.weights_file());
    let tmp = dir.join(format!("{}.tmp", format.weights_file()));
    write_safetensors(
        &tmp,
        tensors.iter().map(|(n, t)| (n.clone(), t.view())).collect(),
    )?;
    std::fs::rename(&tmp, &weights).map_err(|e| ModelError::io(&weights, e))?;

    let config_path = dir.join(CONFIG_FILE);
    let tmp = dir.join(format!("{CONFIG_FILE}.tmp"));
    let text = serde_json::to_string_pretty(&config).map_err(|e| {
        ModelError::format(&config_path, format!("cannot serialise the config: {e}"))
    })?;
    std::fs::write(&tmp, text + "\n").map_err(|e| ModelError::io(&tmp, e))?;
    File::open(&tmp)
        .and_then(|f| f.sync_all())
        .map_err(|e| ModelError::io(&tmp, e))?;
    std::fs::rename(&tmp, &config_path).map_err(|e| ModelError::io(&config_path, e))?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| ModelError::io(dir, e))
}

/// Which matrix of a pair a tensor name holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Half {
    A,
    B,
}

/// How one format names and lays out the matrices of a pair.
pub(crate) struct Naming {
    /// What comes before the block index, e.g. `model.layers.`.
    pub prefix: &'static str,
    /// What follows the module path for A and for B, e.g. `lora_A.weight` and `lora_B.weight`.
    pub suffixes: [&'static str; 2],
    /// Whether the file stores `Aᵀ` and `Bᵀ` (mlx-lm) rather than `A` and `B` (PEFT).
    pub transposed: bool,
}

impl Naming {
    /// The tensor name of `half` of `target` in block `layer`.
    pub fn name(&self, layer: usize, target: Target, half: Half) -> String {
        let suffix = match half {
            Half::A => self.suffixes[0],
            Half::B => self.suffixes[1],
        };
        format!("{}{layer}.{}.{suffix}", self.prefix, target.module_path())
    }

    /// The inverse of [`Naming::name`], `None` for names the format does not produce.
    pub fn parse(&self, name: &str) -> Option<(usize, Target, Half)> {
        let (layer, target, suffix) = parse_layer_key(name, self.prefix)?;
        if suffix == self.suffixes[0] {
            Some((layer, target, Half::A))
        } else if suffix == self.suffixes[1] {
            Some((layer, target, Half::B))
        } else {
            None
        }
    }
}

/// Reads the adapter's `config.json` as JSON.
fn read_config(dir: &Path) -> Result<serde_json::Value> {
    let path = dir.join(CONFIG_FILE);
    let text = std::fs::read_to_string(&path).map_err(|e| ModelError::io(&path, e))?;
    serde_json::from_str(&text).map_err(|e| {
        ModelError::format(
            &path,
            format!("invalid JSON ({e}); restore the adapter's config"),
        )
    })
}

/// Every pair in the weights file of `dir`, keyed by (layer, target); any tensor the format does
/// not name, and any pair missing a half, is an error naming the tensor.
fn read_pairs(
    dir: &Path,
    weights_file: &str,
    naming: &Naming,
    scale: f32,
) -> Result<BTreeMap<(usize, Target), LoraLinear>> {
    let path = dir.join(weights_file);
    let file = SafetensorsFile::open(&path)?;
    let mut halves: BTreeMap<(usize, Target), (Option<Tensor>, Option<Tensor>)> = BTreeMap::new();
    for name in file.names() {
        let (layer, target, half) = naming.parse(&name).ok_or_else(|| {
            ModelError::format(
                &path,
                format!(
                    "tensor `{name}` is not a LoRA matrix of a q/k/v/o/gate/up/down projection \
                     (expected names like `{}`); anetrain cannot apply it",
                    naming.name(0, Target::QProj, Half::A)
                ),
            )
        })?;
        let mut tensor = file.read(&name)?;
        if tensor.shape().len() != 2 {
            return Err(ModelError::format(
                &path,
                format!(
                    "tensor `{name}` has shape {:?}; LoRA matrices are 2-D",
                    tensor.shape()
                ),
            ));
        }
        if naming.transposed {
            tensor = transposed(&tensor);
        }
        let slot = halves.entry((layer, target)).or_default();
        match half {
            Half::A => slot.0 = Some(tensor),
            Half::B => slot.1 = Some(tensor),
        }
    }
    let mut pairs = BTreeMap::new();
    for ((layer, target), slot) in halves {
        let missing = |half| {
            ModelError::format(
                &path,
                format!(
                    "tensor `{}` is missing though its partner is present; the file is incomplete, re-export the adapter",
                    naming.name(layer, target, half)
                ),
            )
        };
        let a = slot.0.ok_or_else(|| missing(Half::A))?;
        let b = slot.1.ok_or_else(|| missing(Half::B))?;
        let pair = LoraLinear::new(a, b, scale).map_err(|e| {
            ModelError::format(
                &path,
                format!("{}: {e}", naming.name(layer, target, Half::A)),
            )
        })?;
        pairs.insert((layer, target), pair);
    }
    Ok(pairs)
}

/// The tensors of `adapter` named and laid out by `naming`.
fn write_pairs(adapter: &Adapter, naming: &Naming) -> Vec<(String, Tensor)> {
    let mut out = Vec::new();
    for ((layer, target), pair) in adapter.modules() {
        for (half, t) in [(Half::A, &pair.a), (Half::B, &pair.b)] {
            let t = if naming.transposed {
                transposed(t)
            } else {
                t.clone()
            };
            out.push((naming.name(layer, target, half), t));
        }
    }
    out
}

/// Splits `model.layers.{i}.{module_path}.{suffix}` after `prefix` into (layer, target, rest).
fn parse_layer_key<'a>(name: &'a str, prefix: &str) -> Option<(usize, Target, &'a str)> {
    let rest = name.strip_prefix(prefix)?;
    let (layer, rest) = rest.split_once('.')?;
    let layer = layer.parse().ok()?;
    Target::ALL.into_iter().find_map(|t| {
        rest.strip_prefix(t.module_path())
            .and_then(|r| r.strip_prefix('.'))
            .map(|suffix| (layer, t, suffix))
    })
}

/// `t [rows, cols]` transposed to `[cols, rows]`.
fn transposed(t: &Tensor) -> Tensor {
    let (rows, cols) = (t.shape()[0], t.shape()[1]);
    let mut out = Tensor::zeros(&[cols, rows]);
    for r in 0..rows {
        for c in 0..cols {
            out.data_mut()[c * rows + r] = t.data()[r * cols + c];
        }
    }
    out
}

/// The projections a config `field` lists (short names, module paths, or full module names
/// whose last part is the projection), sorted and without repeats.
pub(crate) fn target_list(dir: &Path, field: &str, items: &[Value]) -> Result<Vec<Target>> {
    let mut targets = Vec::new();
    for item in items {
        let name = item
            .as_str()
            .ok_or_else(|| field_error(dir, field, "must list module names as strings"))?;
        let short = name.rsplit('.').next().unwrap_or(name);
        let target = short
            .parse::<Target>()
            .map_err(|e| field_error(dir, field, &format!("lists `{name}`: {e}")))?;
        targets.push(target);
    }
    targets.sort();
    targets.dedup();
    Ok(targets)
}

/// A config field as a JSON value of the expected kind, or an error naming field and file.
pub(crate) fn field_error(dir: &Path, field: &str, what: &str) -> ModelError {
    ModelError::format(dir.join(CONFIG_FILE), format!("field `{field}` {what}"))
}
