//! What a LoRA adapter adapts: rank, alpha, which projections and which layers.
//!
//! Defaults follow mlx-lm and PEFT where they agree: rank 8, the query and value projections.
//! Alpha defaults to 16 (scale `alpha / rank` = 2), and every layer is adapted unless
//! `--lora-layers N` restricts it to the top `N` (mlx-lm's default of 16 fails on models with
//! fewer layers, and PEFT adapts all layers).

use std::fmt;
use std::ops::Range;
use std::str::FromStr;

use crate::config::ModelConfig;
use crate::error::{ModelError, Result};
use crate::params::{LayerParams, Tensor};

/// Default rank `r` of `A [r, in]` and `B [out, r]`.
pub const DEFAULT_RANK: usize = 8;
/// Default alpha; the update is scaled by `alpha / rank`.
pub const DEFAULT_ALPHA: f32 = 16.0;
/// Default projections adapted (mlx-lm's and PEFT's choice for Llama and Qwen).
pub const DEFAULT_TARGETS: &[Target] = &[Target::QProj, Target::VProj];

/// One of the seven linear projections of a transformer block.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Target {
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

impl Target {
    /// All targets, in Hugging Face module order.
    pub const ALL: [Target; 7] = [
        Target::QProj,
        Target::KProj,
        Target::VProj,
        Target::OProj,
        Target::GateProj,
        Target::UpProj,
        Target::DownProj,
    ];

    /// The short name used by PEFT's `target_modules` and the CLI (`q_proj`).
    pub fn name(self) -> &'static str {
        match self {
            Target::QProj => "q_proj",
            Target::KProj => "k_proj",
            Target::VProj => "v_proj",
            Target::OProj => "o_proj",
            Target::GateProj => "gate_proj",
            Target::UpProj => "up_proj",
            Target::DownProj => "down_proj",
        }
    }

    /// The module path inside a block (`self_attn.q_proj`), as weight names and mlx-lm's
    /// `lora_parameters.keys` spell it.
    pub fn module_path(self) -> &'static str {
        match self {
            Target::QProj => "self_attn.q_proj",
            Target::KProj => "self_attn.k_proj",
            Target::VProj => "self_attn.v_proj",
            Target::OProj => "self_attn.o_proj",
            Target::GateProj => "mlp.gate_proj",
            Target::UpProj => "mlp.up_proj",
            Target::DownProj => "mlp.down_proj",
        }
    }

    /// `(out, in)` of the projection's weight for `config`.
    pub fn shape(self, config: &ModelConfig) -> (usize, usize) {
        match self {
            Target::QProj => (config.q_dim(), config.dim),
            Target::KProj | Target::VProj => (config.kv_dim(), config.dim),
            Target::OProj => (config.dim, config.q_dim()),
            Target::GateProj | Target::UpProj => (config.hidden_dim, config.dim),
            Target::DownProj => (config.dim, config.hidden_dim),
        }
    }

    /// The projection's weight in a block.
    pub fn weight(self, layer: &LayerParams) -> &Tensor {
        match self {
            Target::QProj => &layer.q_proj,
            Target::KProj => &layer.k_proj,
            Target::VProj => &layer.v_proj,
            Target::OProj => &layer.o_proj,
            Target::GateProj => &layer.gate_proj,
            Target::UpProj => &layer.up_proj,
            Target::DownProj => &layer.down_proj,
        }
    }

    /// The projection's weight in a block, mutable (for fusing).
    pub fn weight_mut(self, layer: &mut LayerParams) -> &mut Tensor {
        match self {
            Target::QProj => &mut layer.q_proj,
            Target::KProj => &mut layer.k_proj,
            Target::VProj => &mut layer.v_proj,
            Target::OProj => &mut layer.o_proj,
            Target::GateProj => &mut layer.gate_proj,
            Target::UpProj => &mut layer.up_proj,
            Target::DownProj => &mut layer.down_proj,
        }
    }

    /// Parses a comma-separated list (`q_proj,v_proj`, or `all` for every projection) into
    /// sorted, distinct targets.
    pub fn parse_list(text: &str) -> Result<Vec<Target>> {
        let mut targets = Vec::new();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            if part == "all" || part == "all-linear" {
                targets.extend(Target::ALL);
            } else {
                targets.push(part.parse()?);
            }
        }
        targets.sort();
        targets.dedup();
        if targets.is_empty() {
            return Err(ModelError::Config(format!(
                "no LoRA targets in `{text}`; list some of {}",
                Target::names()
            )));
        }
        Ok(targets)
    }

    /// `q_proj, k_proj, ...`: the accepted spellings, for error messages.
    fn names() -> String {
        Target::ALL.map(Target::name).join(", ")
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Target {
    type Err = ModelError;

    /// Accepts the short name (`q_proj`) or the module path (`self_attn.q_proj`).
    fn from_str(s: &str) -> Result<Self> {
        Target::ALL
            .into_iter()
            .find(|t| s == t.name() || s == t.module_path())
            .ok_or_else(|| {
                ModelError::Config(format!(
                    "unknown LoRA target `{s}`; use some of {} (or `all`)",
                    Target::names()
                ))
            })
    }
}

/// Which blocks carry adapters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layers {
    /// Every block.
    All,
    /// The last `n` blocks (mlx-lm's `--num-layers n`).
    Top(usize),
}

/// Everything that fixes an adapter's shape and scale.
#[derive(Clone, Debug, PartialEq)]
pub struct LoraConfig {
    /// Rank `r`.
    pub rank: usize,
    /// Alpha; the low-rank update is scaled by `alpha / rank`.
    pub alpha: f32,
    /// The adapted projections, sorted and distinct.
    pub targets: Vec<Target>,
    /// The adapted blocks.
    pub layers: Layers,
}

impl Default for LoraConfig {
    fn default() -> Self {
        LoraConfig {
            rank: DEFAULT_RANK,
            alpha: DEFAULT_ALPHA,
            targets: DEFAULT_TARGETS.to_vec(),
            layers: Layers::All,
        }
    }
}

impl LoraConfig {
    /// The factor `s = alpha / rank` in `y = x Wᵀ + s·(x Aᵀ) Bᵀ`.
    pub fn scale(&self) -> f32 {
        self.alpha / self.rank as f32
    }

    /// Checks the config can adapt `model`, naming the setting to change.
    pub fn validate(&self, model: &ModelConfig) -> Result<()> {
        if self.rank == 0 {
            return Err(ModelError::Config(
                "LoRA rank is 0; pass --lora-rank of at least 1 (8 is usual)".into(),
            ));
        }
        if !(self.alpha.is_finite() && self.alpha > 0.0) {
            return Err(ModelError::Config(format!(
                "LoRA alpha {} is not a positive number; pass --lora-alpha like 16",
                self.alpha
            )));
        }
        if self.targets.is_empty() {
            return Err(ModelError::Config(format!(
                "no LoRA targets; pass --lora-targets with some of {}",
                Target::names()
            )));
        }
        if let Layers::Top(n) = self.layers {
            if n == 0 || n > model.n_layers {
                return Err(ModelError::Config(format!(
                    "--lora-layers {n} but the model has {} layers; pass 1..={} (or omit it for all)",
                    model.n_layers, model.n_layers
                )));
            }
        }
        Ok(())
    }

    /// Indices of the adapted blocks of a model with `n_layers` blocks.
    pub fn layer_range(&self, n_layers: usize) -> Range<usize> {
        match self.layers {
            Layers::All => 0..n_layers,
            Layers::Top(n) => n_layers.saturating_sub(n)..n_layers,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_lists_parse_short_names_paths_and_all() {
        assert_eq!(
            Target::parse_list("v_proj, q_proj,q_proj").unwrap(),
            vec![Target::QProj, Target::VProj]
        );
        assert_eq!(
            Target::parse_list("mlp.down_proj").unwrap(),
            vec![Target::DownProj]
        );
        assert_eq!(Target::parse_list("all").unwrap(), Target::ALL.to_vec());
        let err = Target::parse_list("q_proj,qkv").unwrap_err().to_string();
        assert!(err.contains("`qkv`") && err.contains("gate_proj"), "{err}");
    }

    #[test]
    fn top_layers_are_the_last_ones_and_too_many_is_an_error() {
        let model = ModelConfig::preset("tiny").unwrap();
        let config = LoraConfig {
            layers: Layers::Top(1),
            ..LoraConfig::default()
        };
        config.validate(&model).unwrap();
        assert_eq!(
            config.layer_range(model.n_layers),
            model.n_layers - 1..model.n_layers
        );
        let too_many = LoraConfig {
            layers: Layers::Top(model.n_layers + 1),
            ..LoraConfig::default()
        };
        let err = too_many.validate(&model).unwrap_err().to_string();
        assert!(err.contains("--lora-layers"), "{err}");
        assert_eq!(LoraConfig::default().scale(), 2.0);
    }
}
