//! mlx-lm adapters: `adapter_config.json` (`fine_tune_type`, `num_layers`,
//! `lora_parameters: {rank, scale, dropout, keys}`) and `adapters.safetensors` with
//! `model.layers.{i}.{module}.lora_a` `[in, r]` and `...lora_b` `[r, out]` (the transposes of
//! PEFT's matrices), which `mlx_lm.generate --adapter-path` and `mlx_lm.fuse` load.

use std::path::Path;

use serde_json::{json, Value};

use super::adapter::Adapter;
use super::config::{Layers, LoraConfig, Target, DEFAULT_TARGETS};
use super::format::{field_error, read_config, read_pairs, write_pairs, Half, Naming};
use crate::config::ModelConfig;
use crate::error::Result;
use crate::params::Tensor;

/// mlx-lm's weights file.
pub const WEIGHTS_FILE: &str = "adapters.safetensors";

const NAMING: Naming = Naming {
    prefix: "model.layers.",
    suffixes: ["lora_a", "lora_b"],
    transposed: true,
};

/// The config JSON and tensors of `adapter` in mlx-lm's layout. `keys` is always written, since
/// mlx-lm's default set depends on the model type.
pub(crate) fn to_files(adapter: &Adapter, base_model: &str) -> (Value, Vec<(String, Tensor)>) {
    let c = adapter.config();
    let num_layers = c.layer_range(adapter.n_layers()).len();
    let config = json!({
        "model": base_model,
        "fine_tune_type": "lora",
        "num_layers": num_layers,
        "lora_parameters": {
            "rank": c.rank,
            "scale": c.scale(),
            "dropout": 0.0,
            "keys": c.targets.iter().map(|t| t.module_path()).collect::<Vec<_>>(),
        },
    });
    (config, write_pairs(adapter, &NAMING))
}

/// Reads an mlx-lm adapter for the base `model`.
pub fn load(dir: &Path, model: &ModelConfig) -> Result<Adapter> {
    let v = read_config(dir)?;
    let config = parse_config(dir, &v, model)?;
    let pairs = read_pairs(dir, WEIGHTS_FILE, &NAMING, config.scale())?;
    Adapter::from_modules(config, model, pairs, &|l, t| NAMING.name(l, t, Half::A))
}

fn parse_config(dir: &Path, v: &Value, model: &ModelConfig) -> Result<LoraConfig> {
    let err = |field: &str, what: &str| field_error(dir, field, what);
    match v.get("fine_tune_type").and_then(Value::as_str) {
        None | Some("lora") => {}
        Some(other) => {
            return Err(err(
                "fine_tune_type",
                &format!("is \"{other}\"; only \"lora\" adapters are supported"),
            ))
        }
    }
    let p = v
        .get("lora_parameters")
        .ok_or_else(|| err("lora_parameters", "is missing; it holds rank and scale"))?;
    let rank = p
        .get("rank")
        .and_then(Value::as_u64)
        .ok_or_else(|| err("lora_parameters.rank", "must be a positive integer"))?
        as usize;
    let scale = p
        .get("scale")
        .and_then(Value::as_f64)
        .ok_or_else(|| err("lora_parameters.scale", "must be a number"))?;
    let targets = match p.get("keys") {
        None | Some(Value::Null) => DEFAULT_TARGETS.to_vec(),
        Some(Value::Array(items)) => {
            let mut targets = Vec::new();
            for item in items {
                let key = item.as_str().ok_or_else(|| {
                    err("lora_parameters.keys", "must list module paths as strings")
                })?;
                targets
                    .push(key.parse::<Target>().map_err(|e| {
                        err("lora_parameters.keys", &format!("lists `{key}`: {e}"))
                    })?);
            }
            targets.sort();
            targets.dedup();
            targets
        }
        Some(_) => {
            return Err(err(
                "lora_parameters.keys",
                "must be a list like [\"self_attn.q_proj\", \"self_attn.v_proj\"]",
            ))
        }
    };
    let n = model.n_layers;
    let layers = match v.get("num_layers").and_then(Value::as_i64) {
        // mlx-lm adapts `layers[-max(num_layers, 0):]`, so 0 and negative counts mean all.
        Some(k) if k <= 0 || k as usize == n => Layers::All,
        Some(k) if (k as usize) < n => Layers::Top(k as usize),
        Some(k) => {
            return Err(err(
                "num_layers",
                &format!("is {k} but the base model has {n} layers; pass the base model the adapter was trained on"),
            ))
        }
        None => return Err(err("num_layers", "is missing; it says how many top layers are adapted")),
    };
    Ok(LoraConfig {
        rank,
        alpha: (scale * rank as f64) as f32,
        targets,
        layers,
    })
}
