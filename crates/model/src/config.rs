//! Model configuration: the shape of a Llama- or Qwen3-family transformer, with presets, validation
//! and conversion from and to a Hugging Face `config.json`.

use std::path::Path;

use anetrain_data::Tokenizer;
use serde_json::{json, Map, Value};

use crate::error::{ModelError, Result};

/// The architecture family, which fixes the small differences between Llama and Qwen3.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    /// Llama (and llama2.c): no QK-norm.
    Llama,
    /// Qwen3: RMSNorm over each query and key head (`q_norm`, `k_norm`) before RoPE.
    Qwen3,
}

impl Family {
    /// The Hugging Face `model_type` string.
    pub fn model_type(self) -> &'static str {
        match self {
            Family::Llama => "llama",
            Family::Qwen3 => "qwen3",
        }
    }

    /// The Hugging Face class `transformers` instantiates for causal language modelling.
    pub fn architecture(self) -> &'static str {
        match self {
            Family::Llama => "LlamaForCausalLM",
            Family::Qwen3 => "Qwen3ForCausalLM",
        }
    }
}

/// The shape of one transformer. Every derived size is computed by a method here, so there is one
/// definition of each.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelConfig {
    /// Architecture family.
    pub family: Family,
    /// Width of the residual stream (`hidden_size`).
    pub dim: usize,
    /// Number of transformer blocks.
    pub n_layers: usize,
    /// Number of query heads.
    pub n_heads: usize,
    /// Number of key/value heads (equal to `n_heads` without GQA).
    pub n_kv_heads: usize,
    /// Width of one attention head; may differ from `dim / n_heads` (Qwen3).
    pub head_dim: usize,
    /// Width of the SwiGLU hidden layer (`intermediate_size`).
    pub hidden_dim: usize,
    /// Number of token ids.
    pub vocab_size: usize,
    /// Longest sequence the model is trained and run at (`max_position_embeddings`).
    pub max_seq_len: usize,
    /// RoPE base frequency.
    pub rope_theta: f64,
    /// RMSNorm epsilon, added inside the square root.
    pub norm_eps: f64,
    /// Whether the classifier reuses the token embedding (no `lm_head.weight`).
    pub tied_embeddings: bool,
    /// Whether queries and keys are RMS-normalised per head before RoPE (Qwen3).
    pub qk_norm: bool,
    /// The `bos_token_id` / `eos_token_id` of `config.json`, kept so exports and generation
    /// stop where the model's tokenizer says; not part of the model's shape.
    pub special_tokens: SpecialTokens,
}

/// The ids that start and end a sequence, as a Hugging Face config names them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SpecialTokens {
    /// `bos_token_id`.
    pub bos: Option<u32>,
    /// `eos_token_id` (a config may list several).
    pub eos: Vec<u32>,
}

impl SpecialTokens {
    /// The ids `tokenizer` starts and ends sequences with.
    pub fn of(tokenizer: &dyn Tokenizer) -> Self {
        SpecialTokens {
            bos: tokenizer.bos(),
            eos: tokenizer.eos().into_iter().collect(),
        }
    }

    /// Whether the config names neither id.
    pub fn is_empty(&self) -> bool {
        self.bos.is_none() && self.eos.is_empty()
    }

    /// The `bos_token_id` and `eos_token_id` values of `config.json` and
    /// `generation_config.json` (`null` when unknown, a list for several EOS ids).
    pub fn to_hf_values(&self) -> (Value, Value) {
        let eos = match self.eos.as_slice() {
            [] => Value::Null,
            [one] => json!(one),
            many => json!(many),
        };
        (self.bos.map_or(Value::Null, |b| json!(b)), eos)
    }
}

/// Names accepted by [`ModelConfig::preset`].
pub const PRESETS: &[&str] = &[
    "stories15M",
    "stories42M",
    "stories110M",
    "qwen3-0.6b",
    "tiny",
    "tiny-gqa",
    "tiny-qwen3",
];

impl ModelConfig {
    /// The sequence length to build kernels at: `seq` when given, else `max_seq_len` capped at
    /// 256 (the training default); a length the model cannot hold is an error naming `--seq`.
    pub fn kernel_seq(&self, seq: Option<usize>) -> Result<usize> {
        let seq = seq.unwrap_or(self.max_seq_len.min(256));
        if seq == 0 || seq > self.max_seq_len {
            return Err(ModelError::Options(format!(
                "--seq {seq} must be between 1 and the model's max_seq_len {}; pass a smaller --seq",
                self.max_seq_len
            )));
        }
        Ok(seq)
    }

    /// Takes `tokenizer`'s BOS/EOS ids when the config names none (a preset, a llama2.c
    /// file), so checkpoints and exports carry them.
    pub fn adopt_special_tokens(&mut self, tokenizer: &dyn Tokenizer) {
        if self.special_tokens.is_empty() {
            self.special_tokens = SpecialTokens::of(tokenizer);
        }
    }

    /// Number of parameters the config implies (a tied embedding counts once); `None` when
    /// the sizes overflow, which [`ModelConfig::validate`] reports.
    pub fn param_count(&self) -> Option<u64> {
        let m = |a: usize, b: usize| (a as u64).checked_mul(b as u64);
        let q_dim = m(self.n_heads, self.head_dim)?;
        let kv_dim = m(self.n_kv_heads, self.head_dim)?;
        let dim = self.dim as u64;
        let norms = if self.qk_norm {
            m(2, self.head_dim)?
        } else {
            0
        };
        let layer = dim
            .checked_mul(2)?
            .checked_add(q_dim.checked_mul(dim)?.checked_mul(2)?)?
            .checked_add(kv_dim.checked_mul(dim)?.checked_mul(2)?)?
            .checked_add(m(self.hidden_dim, self.dim)?.checked_mul(3)?)?
            .checked_add(norms)?;
        let embed = m(self.vocab_size, self.dim)?;
        let classifiers = if self.tied_embeddings { 1 } else { 2 };
        embed
            .checked_mul(classifiers)?
            .checked_add(layer.checked_mul(self.n_layers as u64)?)?
            .checked_add(dim)
            // Every tensor must also be addressable as one slice of f32.
            .filter(|&n| n.checked_mul(4).is_some_and(|b| b <= isize::MAX as u64))
    }

    /// Query projection width, `n_heads * head_dim`.
    pub fn q_dim(&self) -> usize {
        self.n_heads * self.head_dim
    }

    /// Key/value projection width, `n_kv_heads * head_dim`.
    pub fn kv_dim(&self) -> usize {
        self.n_kv_heads * self.head_dim
    }

    /// Query heads per key/value head.
    pub fn gqa_ratio(&self) -> usize {
        self.n_heads / self.n_kv_heads
    }

    /// The key/value head that query head `h` attends with: `h / gqa_ratio`, as Hugging Face's
    /// `repeat_kv` does. The one place this mapping is defined.
    pub fn kv_head(&self, h: usize) -> usize {
        h / self.gqa_ratio()
    }

    /// A named configuration: the llama2.c TinyStories models, the Qwen3-0.6B shape, and tiny
    /// models for tests. See [`PRESETS`].
    pub fn preset(name: &str) -> Result<Self> {
        let stories = |dim, n_layers, n_heads, hidden_dim| ModelConfig {
            family: Family::Llama,
            dim,
            n_layers,
            n_heads,
            n_kv_heads: n_heads,
            head_dim: dim / n_heads,
            hidden_dim,
            vocab_size: 32000,
            max_seq_len: 256,
            rope_theta: 10000.0,
            norm_eps: 1e-5,
            tied_embeddings: true,
            qk_norm: false,
            special_tokens: SpecialTokens::default(),
        };
        let tiny = ModelConfig {
            family: Family::Llama,
            dim: 64,
            n_layers: 2,
            n_heads: 4,
            n_kv_heads: 4,
            head_dim: 16,
            hidden_dim: 128,
            vocab_size: 256,
            max_seq_len: 64,
            rope_theta: 10000.0,
            norm_eps: 1e-5,
            tied_embeddings: false,
            qk_norm: false,
            special_tokens: SpecialTokens::default(),
        };
        let config = match name {
            "stories15M" => stories(288, 6, 6, 768),
            "stories42M" => stories(512, 8, 8, 1376),
            "stories110M" => stories(768, 12, 12, 2048),
            // Trained at 256 tokens like the stories models; the real checkpoint allows 40960.
            "qwen3-0.6b" => ModelConfig {
                family: Family::Qwen3,
                dim: 1024,
                n_layers: 28,
                n_heads: 16,
                n_kv_heads: 8,
                head_dim: 128,
                hidden_dim: 3072,
                vocab_size: 151936,
                max_seq_len: 256,
                rope_theta: 1e6,
                norm_eps: 1e-6,
                tied_embeddings: true,
                qk_norm: true,
                special_tokens: SpecialTokens::default(),
            },
            "tiny" => tiny,
            "tiny-gqa" => ModelConfig {
                n_kv_heads: 2,
                hidden_dim: 96,
                tied_embeddings: true,
                ..tiny
            },
            "tiny-qwen3" => ModelConfig {
                family: Family::Qwen3,
                n_kv_heads: 2,
                head_dim: 24,
                rope_theta: 1e6,
                norm_eps: 1e-6,
                tied_embeddings: true,
                qk_norm: true,
                ..tiny
            },
            _ => {
                return Err(ModelError::Config(format!(
                    "unknown preset `{name}`; choose one of {}",
                    PRESETS.join(", ")
                )))
            }
        };
        config.validate()?;
        Ok(config)
    }

    /// Checks that the configuration describes a transformer the reference and the kernels can
    /// run; the error names the offending field and what to change.
    pub fn validate(&self) -> Result<()> {
        let bad = |message: String| Err(ModelError::Config(message));
        for (field, value) in [
            ("dim", self.dim),
            ("n_layers", self.n_layers),
            ("n_heads", self.n_heads),
            ("n_kv_heads", self.n_kv_heads),
            ("head_dim", self.head_dim),
            ("hidden_dim", self.hidden_dim),
            ("vocab_size", self.vocab_size),
            ("max_seq_len", self.max_seq_len),
        ] {
            if value == 0 {
                return bad(format!("`{field}` is 0; it must be a positive integer"));
            }
        }
        if self.param_count().is_none() {
            return bad(format!(
                "the sizes (dim {}, hidden_dim {}, n_layers {}, n_heads {}, head_dim {}, vocab_size {}) imply more parameters than any machine can hold; check config.json",
                self.dim, self.hidden_dim, self.n_layers, self.n_heads, self.head_dim, self.vocab_size
            ));
        }
        if !self.n_heads.is_multiple_of(self.n_kv_heads) {
            return bad(format!(
                "`n_heads` ({}) is not a multiple of `n_kv_heads` ({}); choose kv heads that divide the query heads",
                self.n_heads, self.n_kv_heads
            ));
        }
        if !self.head_dim.is_multiple_of(2) {
            return bad(format!(
                "`head_dim` ({}) is odd; RoPE rotates pairs, so it must be even",
                self.head_dim
            ));
        }
        if self.vocab_size > u32::MAX as usize {
            return bad(format!(
                "`vocab_size` ({}) does not fit the u32 token ids",
                self.vocab_size
            ));
        }
        if !(self.rope_theta.is_finite() && self.rope_theta > 0.0) {
            return bad(format!(
                "`rope_theta` ({}) must be a positive finite number (10000 for Llama, 1e6 for Qwen3)",
                self.rope_theta
            ));
        }
        if !(self.norm_eps.is_finite() && self.norm_eps > 0.0) {
            return bad(format!(
                "`norm_eps` ({}) must be a positive finite number (1e-5 for Llama, 1e-6 for Qwen3)",
                self.norm_eps
            ));
        }
        let wants_qk_norm = self.family == Family::Qwen3;
        if self.qk_norm != wants_qk_norm {
            return bad(format!(
                "`qk_norm` is {} but family {:?} {} QK-norm; set qk_norm = {wants_qk_norm}",
                self.qk_norm,
                self.family,
                if wants_qk_norm {
                    "always has"
                } else {
                    "has no"
                }
            ));
        }
        Ok(())
    }

    /// Reads a Hugging Face `config.json` of the Llama or Qwen3 families. Missing optional fields
    /// take the defaults `transformers` gives them; features anetrain does not implement (biases,
    /// RoPE scaling, sliding windows, activations other than SiLU) are refused by name.
    pub fn from_hf_json(text: &str) -> Result<Self> {
        let value: Value = serde_json::from_str(text)
            .map_err(|e| ModelError::Config(format!("config.json is not valid JSON: {e}")))?;
        let obj = value
            .as_object()
            .ok_or_else(|| ModelError::Config("config.json is not a JSON object".into()))?;
        let family = match obj.get("model_type").and_then(Value::as_str) {
            Some("llama") => Family::Llama,
            Some("qwen3") => Family::Qwen3,
            Some(other) => {
                return Err(ModelError::Config(format!(
                    "`model_type` is `{other}`; anetrain supports `llama` and `qwen3`"
                )))
            }
            None => {
                return Err(ModelError::Config(
                    "`model_type` is missing; it must be `llama` or `qwen3`".into(),
                ))
            }
        };
        refuse_unsupported(obj)?;

        let dim = required_usize(obj, "hidden_size")?;
        let n_heads = required_usize(obj, "num_attention_heads")?;
        if n_heads == 0 {
            return Err(ModelError::Config(
                "`num_attention_heads` is 0; it must be positive".into(),
            ));
        }
        // Qwen3Config defaults head_dim to 128; LlamaConfig derives it from the width.
        let default_head_dim = match family {
            Family::Llama => dim / n_heads,
            Family::Qwen3 => 128,
        };
        let default_max_seq = match family {
            Family::Llama => 2048,
            Family::Qwen3 => 32768,
        };
        let nested_theta = obj
            .get("rope_parameters")
            .and_then(|p| p.get("rope_theta"))
            .filter(|v| !v.is_null());
        let rope_theta = match nested_theta.or(obj.get("rope_theta").filter(|v| !v.is_null())) {
            Some(v) => v.as_f64().ok_or_else(|| {
                ModelError::Config(format!("`rope_theta` is {v}; it must be a number"))
            })?,
            None => 10000.0,
        };
        let config = ModelConfig {
            family,
            dim,
            n_layers: required_usize(obj, "num_hidden_layers")?,
            n_heads,
            n_kv_heads: optional_usize(obj, "num_key_value_heads")?.unwrap_or(n_heads),
            head_dim: optional_usize(obj, "head_dim")?.unwrap_or(default_head_dim),
            hidden_dim: required_usize(obj, "intermediate_size")?,
            vocab_size: required_usize(obj, "vocab_size")?,
            max_seq_len: optional_usize(obj, "max_position_embeddings")?.unwrap_or(default_max_seq),
            rope_theta,
            norm_eps: optional_f64(obj, "rms_norm_eps")?.unwrap_or(1e-6),
            tied_embeddings: optional_bool(obj, "tie_word_embeddings")?.unwrap_or(false),
            qk_norm: family == Family::Qwen3,
            special_tokens: SpecialTokens {
                bos: optional_id(obj, "bos_token_id")?,
                eos: optional_ids(obj, "eos_token_id")?,
            },
        };
        config.validate()?;
        Ok(config)
    }

    /// Reads `config.json` from a Hugging Face model directory, adding the EOS ids its
    /// `generation_config.json` lists (chat models stop at their end-of-turn token that way).
    pub fn from_hf_dir(dir: &Path) -> Result<Self> {
        let path = dir.join("config.json");
        let text = std::fs::read_to_string(&path).map_err(|e| ModelError::io(&path, e))?;
        fn in_file(path: &Path) -> impl Fn(ModelError) -> ModelError + '_ {
            move |e| match e {
                ModelError::Config(message) => ModelError::format(path, message),
                other => other,
            }
        }
        let mut config = Self::from_hf_json(&text).map_err(in_file(&path))?;
        let path = dir.join(crate::hf::GENERATION_CONFIG_FILE);
        if path.is_file() {
            let text = std::fs::read_to_string(&path).map_err(|e| ModelError::io(&path, e))?;
            let value: Value = serde_json::from_str(&text).map_err(|e| {
                ModelError::format(&path, format!("is not valid JSON ({e}); fix or remove it"))
            })?;
            let obj = value.as_object().ok_or_else(|| {
                ModelError::format(&path, "is not a JSON object; fix or remove it")
            })?;
            for id in optional_ids(obj, "eos_token_id").map_err(in_file(&path))? {
                if !config.special_tokens.eos.contains(&id) {
                    config.special_tokens.eos.push(id);
                }
            }
        }
        Ok(config)
    }

    /// A `config.json` that `transformers` loads into the matching `*ForCausalLM` with fp32
    /// weights. `rope_theta` is written both at the top level (transformers 4) and inside
    /// `rope_parameters` (transformers 5).
    pub fn to_hf_json(&self) -> String {
        let mut config = json!({
            "architectures": [self.family.architecture()],
            "model_type": self.family.model_type(),
            "hidden_size": self.dim,
            "intermediate_size": self.hidden_dim,
            "num_hidden_layers": self.n_layers,
            "num_attention_heads": self.n_heads,
            "num_key_value_heads": self.n_kv_heads,
            "head_dim": self.head_dim,
            "vocab_size": self.vocab_size,
            "max_position_embeddings": self.max_seq_len,
            "rms_norm_eps": self.norm_eps,
            "rope_theta": self.rope_theta,
            "rope_parameters": { "rope_type": "default", "rope_theta": self.rope_theta },
            "tie_word_embeddings": self.tied_embeddings,
            "hidden_act": "silu",
            "attention_bias": false,
            "attention_dropout": 0.0,
            "initializer_range": 0.02,
            "torch_dtype": "float32",
            "dtype": "float32",
            "use_cache": true,
        });
        let (bos, eos) = self.special_tokens.to_hf_values();
        if let Some(obj) = config.as_object_mut() {
            obj.insert("bos_token_id".into(), bos);
            obj.insert("eos_token_id".into(), eos);
            match self.family {
                Family::Llama => {
                    obj.insert("mlp_bias".into(), json!(false));
                }
                Family::Qwen3 => {
                    obj.insert("use_sliding_window".into(), json!(false));
                    obj.insert("sliding_window".into(), Value::Null);
                    obj.insert("max_window_layers".into(), json!(self.n_layers));
                }
            }
        }
        // Pretty-printing a `Value` cannot fail; fall back to the compact form to stay total.
        serde_json::to_string_pretty(&config).unwrap_or_else(|_| config.to_string())
    }
}

/// Rejects `config.json` features whose weights or maths anetrain does not implement, rather than
/// silently computing a different model.
fn refuse_unsupported(obj: &Map<String, Value>) -> Result<()> {
    let refuse = |message: String| Err(ModelError::Config(message));
    if let Some(act) = obj.get("hidden_act").and_then(Value::as_str) {
        if act != "silu" {
            return refuse(format!(
                "`hidden_act` is `{act}`; only `silu` (SwiGLU) is supported"
            ));
        }
    }
    for field in ["attention_bias", "mlp_bias", "use_sliding_window"] {
        if obj.get(field).and_then(Value::as_bool) == Some(true) {
            return refuse(format!("`{field}` is true; anetrain does not implement it"));
        }
    }
    for field in ["rope_scaling", "rope_parameters"] {
        let Some(params) = obj.get(field).filter(|v| !v.is_null()) else {
            continue;
        };
        let kind = params
            .get("rope_type")
            .or_else(|| params.get("type"))
            .and_then(Value::as_str)
            .unwrap_or("default");
        if kind != "default" {
            return refuse(format!(
                "`{field}` asks for RoPE type `{kind}`; only the default RoPE is supported"
            ));
        }
    }
    Ok(())
}

fn optional_usize(obj: &Map<String, Value>, field: &str) -> Result<Option<usize>> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_u64()
            .and_then(|n| usize::try_from(n).ok())
            .map(Some)
            .ok_or_else(|| {
                ModelError::Config(format!(
                    "`{field}` is {v}; it must be a non-negative integer"
                ))
            }),
    }
}

/// A token id field (`null` or absent is none).
fn optional_id(obj: &Map<String, Value>, field: &str) -> Result<Option<u32>> {
    optional_usize(obj, field)?
        .map(|n| {
            u32::try_from(n).map_err(|_| {
                ModelError::Config(format!("`{field}` is {n}; a token id must fit in 32 bits"))
            })
        })
        .transpose()
}

/// A token id field that may also be a list of ids (`eos_token_id`).
fn optional_ids(obj: &Map<String, Value>, field: &str) -> Result<Vec<u32>> {
    match obj.get(field) {
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| {
                v.as_u64()
                    .and_then(|n| u32::try_from(n).ok())
                    .ok_or_else(|| {
                        ModelError::Config(format!(
                            "`{field}` lists {v}; token ids must be non-negative integers"
                        ))
                    })
            })
            .collect(),
        _ => Ok(optional_id(obj, field)?.into_iter().collect()),
    }
}

fn required_usize(obj: &Map<String, Value>, field: &str) -> Result<usize> {
    optional_usize(obj, field)?.ok_or_else(|| {
        ModelError::Config(format!("`{field}` is missing; config.json must give it"))
    })
}

fn optional_f64(obj: &Map<String, Value>, field: &str) -> Result<Option<f64>> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_f64()
            .map(Some)
            .ok_or_else(|| ModelError::Config(format!("`{field}` is {v}; it must be a number"))),
    }
}

fn optional_bool(obj: &Map<String, Value>, field: &str) -> Result<Option<bool>> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v.as_bool().map(Some).ok_or_else(|| {
            ModelError::Config(format!("`{field}` is {v}; it must be true or false"))
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn special_token_ids_survive_config_json() {
        let mut obj: Value =
            serde_json::from_str(&ModelConfig::preset("tiny").unwrap().to_hf_json()).unwrap();
        obj["bos_token_id"] = json!(1);
        obj["eos_token_id"] = json!([2, 7]);
        let config = ModelConfig::from_hf_json(&obj.to_string()).unwrap();
        let want = SpecialTokens {
            bos: Some(1),
            eos: vec![2, 7],
        };
        assert_eq!(config.special_tokens, want);
        let back = ModelConfig::from_hf_json(&config.to_hf_json()).unwrap();
        assert_eq!(back.special_tokens, want);
        obj["eos_token_id"] = json!(-1);
        let e = ModelConfig::from_hf_json(&obj.to_string())
            .unwrap_err()
            .to_string();
        assert!(e.contains("eos_token_id"), "{e}");
    }

    #[test]
    fn generation_config_adds_its_eos_ids_and_a_broken_one_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let mut obj: Value =
            serde_json::from_str(&ModelConfig::preset("tiny").unwrap().to_hf_json()).unwrap();
        obj["eos_token_id"] = json!(2);
        std::fs::write(dir.path().join("config.json"), obj.to_string()).unwrap();
        let generation = dir.path().join(crate::hf::GENERATION_CONFIG_FILE);
        std::fs::write(&generation, r#"{"eos_token_id": [5, 2]}"#).unwrap();
        let config = ModelConfig::from_hf_dir(dir.path()).unwrap();
        assert_eq!(config.special_tokens.eos, vec![2, 5]);
        std::fs::write(&generation, "{").unwrap();
        let e = ModelConfig::from_hf_dir(dir.path())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("generation_config.json") && e.contains("fix or remove"),
            "{e}"
        );
    }

    #[test]
    fn presets_have_the_documented_shapes() {
        let s = ModelConfig::preset("stories15M").unwrap();
        assert_eq!(
            (s.dim, s.n_layers, s.n_heads, s.hidden_dim),
            (288, 6, 6, 768)
        );
        assert_eq!((s.head_dim, s.vocab_size, s.max_seq_len), (48, 32000, 256));
        let q = ModelConfig::preset("qwen3-0.6b").unwrap();
        assert_eq!((q.q_dim(), q.kv_dim(), q.gqa_ratio()), (2048, 1024, 2));
        assert_eq!(q.kv_head(15), 7);
        assert_eq!(q.kv_head(1), 0);
        for name in PRESETS {
            ModelConfig::preset(name).unwrap();
        }
    }

    #[test]
    fn validation_names_the_field() {
        let mut c = ModelConfig::preset("tiny").unwrap();
        c.n_kv_heads = 3;
        let msg = c.validate().unwrap_err().to_string();
        assert!(msg.contains("n_kv_heads"), "{msg}");
        let mut c = ModelConfig::preset("tiny").unwrap();
        c.hidden_dim = 0;
        assert!(c.validate().unwrap_err().to_string().contains("hidden_dim"));
        assert!(ModelConfig::preset("nope")
            .unwrap_err()
            .to_string()
            .contains("stories15M"));
    }

    #[test]
    fn hf_json_accepts_top_level_theta_and_defaults() {
        let text = r#"{"model_type": "llama", "hidden_size": 64, "num_hidden_layers": 2,
            "num_attention_heads": 4, "intermediate_size": 96, "vocab_size": 100,
            "rope_theta": 500000.0, "rms_norm_eps": 1e-5, "rope_scaling": null}"#;
        let c = ModelConfig::from_hf_json(text).unwrap();
        assert_eq!(c.rope_theta, 500000.0);
        assert_eq!((c.n_kv_heads, c.head_dim, c.max_seq_len), (4, 16, 2048));
        assert!(!c.tied_embeddings);
    }

    #[test]
    fn hf_json_refuses_unsupported_features() {
        let base = r#""model_type": "llama", "hidden_size": 64, "num_hidden_layers": 2,
            "num_attention_heads": 4, "intermediate_size": 96, "vocab_size": 100"#;
        let scaled = format!(r#"{{{base}, "rope_scaling": {{"rope_type": "llama3"}}}}"#);
        let msg = ModelConfig::from_hf_json(&scaled).unwrap_err().to_string();
        assert!(msg.contains("llama3"), "{msg}");
        let biased = format!(r#"{{{base}, "attention_bias": true}}"#);
        assert!(ModelConfig::from_hf_json(&biased)
            .unwrap_err()
            .to_string()
            .contains("attention_bias"));
        let missing = r#"{"model_type": "qwen3"}"#;
        assert!(ModelConfig::from_hf_json(missing)
            .unwrap_err()
            .to_string()
            .contains("hidden_size"));
        let gpt = r#"{"model_type": "gpt2"}"#;
        assert!(ModelConfig::from_hf_json(gpt)
            .unwrap_err()
            .to_string()
            .contains("gpt2"));
    }
}
