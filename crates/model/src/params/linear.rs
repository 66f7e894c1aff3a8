//! The one table of a transformer block's linear projections: their Hugging Face names, their
//! shapes for a config, and where each lives in [`LayerParams`]. Params, staging, weight
//! gradients, engine checks, llama2.c import/export and LoRA targets all read it.

use std::fmt;
use std::str::FromStr;

use super::{Group, LayerParams, Tensor, TensorView, TensorViewMut};
use crate::config::ModelConfig;
use crate::error::{ModelError, Result};

/// One of the seven linear projections of a transformer block.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Linear {
    /// `self_attn.q_proj` `[q_dim, dim]`.
    QProj,
    /// `self_attn.k_proj` `[kv_dim, dim]`.
    KProj,
    /// `self_attn.v_proj` `[kv_dim, dim]`.
    VProj,
    /// `self_attn.o_proj` `[dim, q_dim]`.
    OProj,
    /// `mlp.gate_proj` `[hidden_dim, dim]`.
    GateProj,
    /// `mlp.up_proj` `[hidden_dim, dim]`.
    UpProj,
    /// `mlp.down_proj` `[dim, hidden_dim]`.
    DownProj,
}

impl Linear {
    /// All projections, in Hugging Face module order.
    pub const ALL: [Linear; 7] = [
        Linear::QProj,
        Linear::KProj,
        Linear::VProj,
        Linear::OProj,
        Linear::GateProj,
        Linear::UpProj,
        Linear::DownProj,
    ];

    /// The short name PEFT's `target_modules` and the CLI use (`q_proj`).
    pub fn name(self) -> &'static str {
        self.module_path()
            .rsplit('.')
            .next()
            .unwrap_or_else(|| self.module_path())
    }

    /// The module path inside a block (`self_attn.q_proj`), as weight names and mlx-lm's
    /// `lora_parameters.keys` spell it.
    pub fn module_path(self) -> &'static str {
        match self {
            Linear::QProj => "self_attn.q_proj",
            Linear::KProj => "self_attn.k_proj",
            Linear::VProj => "self_attn.v_proj",
            Linear::OProj => "self_attn.o_proj",
            Linear::GateProj => "mlp.gate_proj",
            Linear::UpProj => "mlp.up_proj",
            Linear::DownProj => "mlp.down_proj",
        }
    }

    /// `(out, in)` of the projection's weight for `config`.
    pub fn shape(self, config: &ModelConfig) -> (usize, usize) {
        match self {
            Linear::QProj => (config.q_dim(), config.dim),
            Linear::KProj | Linear::VProj => (config.kv_dim(), config.dim),
            Linear::OProj => (config.dim, config.q_dim()),
            Linear::GateProj | Linear::UpProj => (config.hidden_dim, config.dim),
            Linear::DownProj => (config.dim, config.hidden_dim),
        }
    }

    /// The projection's weight in a block (a view into its [`Group`]'s stack).
    pub fn get(self, layer: &LayerParams) -> TensorView<'_> {
        let (group, i) = Group::of(self);
        layer.stack(group).block(i)
    }

    /// The projection's weight in a block, mutable.
    pub fn get_mut(self, layer: &mut LayerParams) -> TensorViewMut<'_> {
        let (group, i) = Group::of(self);
        layer.stack_mut(group).blocks_mut().swap_remove(i)
    }

    /// Parses a comma-separated list (`q_proj,v_proj`, or `all` for every projection) into
    /// sorted, distinct projections.
    pub fn parse_list(text: &str) -> Result<Vec<Linear>> {
        let mut out = Vec::new();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            if part == "all" || part == "all-linear" {
                out.extend(Linear::ALL);
            } else {
                out.push(part.parse()?);
            }
        }
        out.sort();
        out.dedup();
        if out.is_empty() {
            return Err(ModelError::Config(format!(
                "no projections in `{text}`; list some of {}",
                Linear::names()
            )));
        }
        Ok(out)
    }

    /// `q_proj, k_proj, ...`: the accepted spellings, for error messages.
    pub fn names() -> String {
        Linear::ALL.map(Linear::name).join(", ")
    }
}

impl fmt::Display for Linear {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Linear {
    type Err = ModelError;

    /// Accepts the short name (`q_proj`) or the module path (`self_attn.q_proj`).
    fn from_str(s: &str) -> Result<Self> {
        Linear::ALL
            .into_iter()
            .find(|t| s == t.name() || s == t.module_path())
            .ok_or_else(|| {
                ModelError::Config(format!(
                    "unknown projection `{s}`; use some of {} (or `all`)",
                    Linear::names()
                ))
            })
    }
}

/// Mutable borrows of every tensor of a block at once, split by kind, so the matrices can go
/// to the weight-gradient worker while the norm gains stay on the main thread.
pub struct LayerPartsMut<'a> {
    /// The projections, indexed by `Linear as usize`.
    pub linears: [TensorViewMut<'a>; 7],
    /// `input_layernorm.weight`.
    pub input_layernorm: &'a mut Tensor,
    /// `post_attention_layernorm.weight`.
    pub post_attention_layernorm: &'a mut Tensor,
    /// `self_attn.q_norm.weight` (Qwen3 only).
    pub q_norm: Option<&'a mut Tensor>,
    /// `self_attn.k_norm.weight` (Qwen3 only).
    pub k_norm: Option<&'a mut Tensor>,
}

impl LayerParams {
    /// Every tensor of the block, borrowed mutably at once.
    pub fn parts_mut(&mut self) -> LayerPartsMut<'_> {
        let LayerParams {
            input_layernorm,
            q_norm,
            k_norm,
            post_attention_layernorm,
            stacks,
        } = self;
        // The stacks in `Group::ALL` order hold the projections in `Linear::ALL` order.
        let linears: Vec<TensorViewMut<'_>> =
            stacks.iter_mut().flat_map(|s| s.blocks_mut()).collect();
        LayerPartsMut {
            linears: linears
                .try_into()
                .unwrap_or_else(|_| unreachable!("a block's stacks hold seven projections")),
            input_layernorm,
            post_attention_layernorm,
            q_norm: q_norm.as_mut(),
            k_norm: k_norm.as_mut(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_parse_short_names_paths_and_all() {
        assert_eq!(
            Linear::parse_list("v_proj, q_proj,q_proj").unwrap(),
            vec![Linear::QProj, Linear::VProj]
        );
        assert_eq!(
            Linear::parse_list("mlp.down_proj").unwrap(),
            vec![Linear::DownProj]
        );
        assert_eq!(Linear::parse_list("all").unwrap(), Linear::ALL.to_vec());
        let err = Linear::parse_list("q_proj,qkv").unwrap_err().to_string();
        assert!(err.contains("`qkv`") && err.contains("gate_proj"), "{err}");
    }

    #[test]
    fn parts_follow_the_table_order() {
        let c = ModelConfig::preset("tiny").unwrap();
        let mut p = super::super::Params::zeros(&c);
        let layer = &mut p.layers[0];
        for l in Linear::ALL {
            l.get_mut(layer).data_mut()[0] = l as usize as f32 + 1.0;
        }
        let parts = layer.parts_mut();
        for (i, t) in parts.linears.iter().enumerate() {
            assert_eq!(t.data()[0], i as f32 + 1.0);
        }
    }
}
