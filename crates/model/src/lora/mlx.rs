//! mlx-lm adapters: `adapter_config.json` (`fine_tune_type`, `num_layers`,
//! `lora_parameters: {rank, scale, dropout, keys}`) and `adapters.safetensors` with
//! `model.layers.{i}.{module}.lora_a` `[in, r]` and `...lora_b` `[r, out]` (the transposes of
//! PEFT's matrices), which `mlx_lm.generate --adapter-path` and `mlx_lm.fuse` load.

use std::path::Path;

use serde_json::{json, Value};

use super::adapter::Adapter;
use super::config::{Layers, LoraConfig, DEFAULT_TARGETS};
use super::format::{field_error, target_list, FormatSpec, Naming};
use crate::config::ModelConfig;
use crate::error::Result;

/// mlx-lm's files, names and config fields.
pub(crate) const FORMAT: FormatSpec = FormatSpec {
    weights_file: "adapters.safetensors",
    naming: Naming {
        prefix: "model.layers.",
        suffixes: ["lora_a", "lora_b"],
        transposed: true,
    },
    read_config: parse_config,
    write_config: to_config,
};

/// The config JSON of `adapter` in mlx-lm's layout. `keys` is always written, since mlx-lm's
/// default set depends on the model type.
fn to_config(adapter: &Adapter, base_model: &str) -> Value {
    let c = adapter.config();
    let num_layers = c.layer_range(adapter.n_layers()).len();
    json!({
        "model": base_model,
        "fine_tune_type": "lora",
        "num_layers": num_layers,
        "lora_parameters": {
            "rank": c.rank,
            "scale": c.scale(),
            "dropout": 0.0,
            "keys": c.targets.iter().map(|t| t.module_path()).collect::<Vec<_>>(),
        },
    })
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
        Some(Value::Array(items)) => target_list(dir, "lora_parameters.keys", items)?,
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
