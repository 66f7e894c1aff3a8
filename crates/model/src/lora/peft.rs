//! Hugging Face PEFT adapters: `adapter_config.json` (`peft_type` LORA) and
//! `adapter_model.safetensors` with `base_model.model.model.layers.{i}.{module}.lora_A.weight`
//! `[r, in]` and `...lora_B.weight` `[out, r]`, which `PeftModel.from_pretrained` loads.

use std::path::Path;

use serde_json::{json, Value};

use super::adapter::Adapter;
use super::config::{Layers, LoraConfig, Target};
use super::format::{field_error, target_list, FormatSpec, Naming};
use crate::config::ModelConfig;
use crate::error::Result;

/// PEFT's files, names and config fields.
pub(crate) const FORMAT: FormatSpec = FormatSpec {
    weights_file: "adapter_model.safetensors",
    naming: Naming {
        prefix: "base_model.model.model.layers.",
        suffixes: ["lora_A.weight", "lora_B.weight"],
        transposed: false,
    },
    read_config: parse_config,
    write_config: to_config,
};

/// The config JSON of `adapter` in PEFT's layout.
fn to_config(adapter: &Adapter, base_model: &str) -> Value {
    let c = adapter.config();
    let layers: Option<Vec<usize>> = match c.layers {
        Layers::All => None,
        Layers::Top(_) => Some(c.layer_range(adapter.n_layers()).collect()),
    };
    json!({
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "base_model_name_or_path": base_model,
        "r": c.rank,
        "lora_alpha": c.alpha,
        "target_modules": c.targets.iter().map(|t| t.name()).collect::<Vec<_>>(),
        "lora_dropout": 0.0,
        "bias": "none",
        "fan_in_fan_out": false,
        "inference_mode": true,
        "init_lora_weights": true,
        "layers_to_transform": layers,
        "layers_pattern": null,
        "modules_to_save": null,
        "rank_pattern": {},
        "alpha_pattern": {},
        "use_rslora": false,
        "use_dora": false,
    })
}

/// The [`LoraConfig`] a PEFT config describes; settings anetrain cannot apply faithfully are
/// errors naming the field.
fn parse_config(dir: &Path, v: &Value, model: &ModelConfig) -> Result<LoraConfig> {
    let err = |field: &str, what: &str| field_error(dir, field, what);
    match v.get("peft_type").and_then(Value::as_str) {
        Some("LORA") => {}
        other => {
            return Err(err(
                "peft_type",
                &format!("is {other:?}; only LoRA adapters (\"LORA\") are supported"),
            ))
        }
    }
    let rank = v
        .get("r")
        .and_then(Value::as_u64)
        .ok_or_else(|| err("r", "must be the adapter rank, a positive integer"))?
        as usize;
    // PEFT's default alpha is 8.
    let lora_alpha = match v.get("lora_alpha") {
        None | Some(Value::Null) => 8.0,
        Some(a) => a
            .as_f64()
            .ok_or_else(|| err("lora_alpha", "must be a number"))?,
    };
    let rslora = v
        .get("use_rslora")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    // rsLoRA scales by alpha/√r; the equivalent plain alpha is alpha·√r.
    let alpha = if rslora {
        lora_alpha * (rank as f64).sqrt()
    } else {
        lora_alpha
    } as f32;

    let targets = match v.get("target_modules") {
        Some(Value::String(s)) if s == "all-linear" => Target::ALL.to_vec(),
        Some(Value::Array(items)) => target_list(dir, "target_modules", items)?,
        _ => {
            return Err(err(
                "target_modules",
                "must be a list of module names (e.g. [\"q_proj\", \"v_proj\"]) or \"all-linear\"; regular expressions are not supported",
            ))
        }
    };

    let n = model.n_layers;
    let layers = match v.get("layers_to_transform") {
        None | Some(Value::Null) => Layers::All,
        Some(l) => {
            let mut list: Vec<usize> = match l {
                Value::Number(i) => i.as_u64().map(|i| vec![i as usize]),
                Value::Array(a) => a.iter().map(|i| i.as_u64().map(|i| i as usize)).collect(),
                _ => None,
            }
            .ok_or_else(|| {
                err(
                    "layers_to_transform",
                    "must be a layer index or a list of them",
                )
            })?;
            list.sort();
            list.dedup();
            let k = list.len();
            if k == 0 || list != (n.saturating_sub(k)..n).collect::<Vec<_>>() {
                return Err(err(
                    "layers_to_transform",
                    &format!("is {list:?}; anetrain adapts the top layers of the base ({n} layers), e.g. {:?}", (n.saturating_sub(k.max(1))..n).collect::<Vec<_>>()),
                ));
            }
            if k == n {
                Layers::All
            } else {
                Layers::Top(k)
            }
        }
    };

    let is_set = |field: &str| match v.get(field) {
        None | Some(Value::Null) | Some(Value::Bool(false)) => false,
        Some(Value::Object(m)) => !m.is_empty(),
        Some(Value::Array(a)) => !a.is_empty(),
        Some(_) => true,
    };
    for field in [
        "use_dora",
        "fan_in_fan_out",
        "modules_to_save",
        "rank_pattern",
        "alpha_pattern",
    ] {
        if is_set(field) {
            return Err(err(
                field,
                "is set; anetrain supports plain LoRA only (no DoRA, per-module ranks, transposed weights or saved full modules)",
            ));
        }
    }
    match v.get("bias").and_then(Value::as_str) {
        None | Some("none") => {}
        Some(other) => {
            return Err(err(
                "bias",
                &format!("is \"{other}\"; only \"none\" is supported (no trained biases)"),
            ))
        }
    }
    Ok(LoraConfig {
        rank,
        alpha,
        targets,
        layers,
    })
}
