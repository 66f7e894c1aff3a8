//! What a LoRA adapter adapts: rank, alpha, which projections and which layers.
//!
//! Defaults follow mlx-lm and PEFT where they agree: rank 8, the query and value projections.
//! Alpha defaults to 16 (scale `alpha / rank` = 2), and every layer is adapted unless
//! `--lora-layers N` restricts it to the top `N` (mlx-lm's default of 16 fails on models with
//! fewer layers, and PEFT adapts all layers).

use std::ops::Range;

use crate::config::ModelConfig;
use crate::error::{ModelError, Result};
/// The projections an adapter can adapt: the model's one table of linear weights.
pub use crate::params::Linear as Target;

/// Default rank `r` of `A [r, in]` and `B [out, r]`.
pub const DEFAULT_RANK: usize = 8;
/// Default alpha; the update is scaled by `alpha / rank`.
pub const DEFAULT_ALPHA: f32 = 16.0;
/// Default projections adapted (mlx-lm's and PEFT's choice for Llama and Qwen).
pub const DEFAULT_TARGETS: &[Target] = &[Target::QProj, Target::VProj];

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
