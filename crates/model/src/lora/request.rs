//! What a user asks of a LoRA run (`train --lora-rank ... | --adapter DIR`), resolved into the
//! adapter to train, with every disagreement reported before any work starts.

use std::path::PathBuf;

use super::adapter::Adapter;
use super::config::{Layers, LoraConfig, Target, DEFAULT_ALPHA, DEFAULT_RANK};
use super::format::load_adapter;
use crate::config::ModelConfig;
use crate::error::{ModelError, Result};

/// The LoRA settings of a run as given; all `None` means a full (non-LoRA) run.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LoraRequest {
    /// `--lora-rank`.
    pub rank: Option<usize>,
    /// `--lora-alpha`.
    pub alpha: Option<f32>,
    /// `--lora-targets`, as typed (`q_proj,v_proj` or `all`).
    pub targets: Option<String>,
    /// `--lora-layers`: adapt only the top N blocks.
    pub layers: Option<usize>,
    /// `--adapter`: an existing PEFT or mlx-lm adapter to continue training.
    pub adapter: Option<PathBuf>,
}

impl LoraRequest {
    /// Whether any LoRA setting was given.
    pub fn is_requested(&self) -> bool {
        *self != LoraRequest::default()
    }

    /// The adapter to train on a base of shape `base` (`None` when no base was given, e.g. a
    /// preset trained from scratch): a fresh one seeded by `seed`, or the `--adapter` one.
    /// Returns `None` for a full run.
    pub fn resolve(&self, base: Option<&ModelConfig>, seed: u64) -> Result<Option<Adapter>> {
        if !self.is_requested() {
            return Ok(None);
        }
        let Some(model) = base else {
            return Err(ModelError::Options(
                "LoRA settings (--lora-*, --adapter; lora_* and adapter in C and Python) train an adapter on an existing model read from a path; pass the base with --init-from BASE (in C and Python: the base's path as the model)".into(),
            ));
        };
        let targets = self
            .targets
            .as_deref()
            .map(Target::parse_list)
            .transpose()?;
        let layers = self.layers.map(Layers::Top);
        let Some(dir) = &self.adapter else {
            let defaults = LoraConfig::default();
            let config = LoraConfig {
                rank: self.rank.unwrap_or(DEFAULT_RANK),
                alpha: self.alpha.unwrap_or(DEFAULT_ALPHA),
                targets: targets.unwrap_or(defaults.targets),
                layers: layers.unwrap_or(defaults.layers),
            };
            return Adapter::init(config, model, seed).map(Some);
        };
        let (adapter, _) = load_adapter(dir, model)?;
        let have = adapter.config();
        let mut clashes = Vec::new();
        if let Some(r) = self.rank.filter(|&r| r != have.rank) {
            clashes.push(format!(
                "--lora-rank {r} (the adapter's rank is {})",
                have.rank
            ));
        }
        if let Some(a) = self.alpha.filter(|&a| a != have.alpha) {
            clashes.push(format!(
                "--lora-alpha {a} (the adapter's is {})",
                have.alpha
            ));
        }
        if let Some(t) = targets.filter(|t| *t != have.targets) {
            let asked = LoraConfig {
                targets: t,
                ..have.clone()
            };
            clashes.push(format!(
                "--lora-targets {} (the adapter's are {})",
                asked.targets_list(),
                have.targets_list()
            ));
        }
        if let Some(l) = layers.filter(|&l| l != have.layers) {
            clashes.push(format!(
                "--lora-layers {l:?} (the adapter has {:?})",
                have.layers
            ));
        }
        if !clashes.is_empty() {
            return Err(ModelError::Options(format!(
                "--adapter {} fixes its own shape, but {} disagree; drop those flags to continue the adapter as it is",
                dir.display(),
                clashes.join(", ")
            )));
        }
        Ok(Some(adapter))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lora_needs_a_base_and_unknown_targets_are_named() {
        let model = ModelConfig::preset("tiny").unwrap();
        let rank = LoraRequest {
            rank: Some(4),
            ..LoraRequest::default()
        };
        let err = rank.resolve(None, 1).unwrap_err().to_string();
        assert!(err.contains("--init-from"), "{err}");
        let a = rank.resolve(Some(&model), 1).unwrap().unwrap();
        assert_eq!(a.config().rank, 4);
        assert_eq!(a.config().alpha, DEFAULT_ALPHA);
        let bad = LoraRequest {
            targets: Some("q_proj,wq".into()),
            ..LoraRequest::default()
        };
        let err = bad.resolve(Some(&model), 1).unwrap_err().to_string();
        assert!(err.contains("`wq`") && err.contains("v_proj"), "{err}");
        assert!(LoraRequest::default().resolve(None, 1).unwrap().is_none());
    }
}
