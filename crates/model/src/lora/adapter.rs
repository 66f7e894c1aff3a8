//! A whole adapter: one [`LoraLinear`] per adapted (layer, projection) of a base model.

use std::collections::BTreeMap;

use anetrain_data::rng::SplitMix64;

use super::config::{LoraConfig, Target};
use super::linear::LoraLinear;
use crate::config::ModelConfig;
use crate::error::{ModelError, Result};
use crate::params::{ParamSet, Params, TensorView, TensorViewMut};

/// The adapter of a base model: its [`LoraConfig`] and the pair of every adapted projection.
///
/// Built only by [`Adapter::init`] or [`Adapter::from_modules`], which check every pair against
/// the base's shapes, so an `Adapter` always fits the base it was made for.
#[derive(Clone, Debug, PartialEq)]
pub struct Adapter {
    config: LoraConfig,
    n_layers: usize,
    modules: BTreeMap<(usize, Target), LoraLinear>,
}

impl Adapter {
    /// A fresh adapter for `model`: every `A` seeded from `(seed, layer, target)`, every `B`
    /// zero, so the adapted model starts out computing exactly the base model.
    pub fn init(config: LoraConfig, model: &ModelConfig, seed: u64) -> Result<Self> {
        config.validate(model)?;
        let mut modules = BTreeMap::new();
        for layer in config.layer_range(model.n_layers) {
            for &target in &config.targets {
                let (d_out, d_in) = target.shape(model);
                let mut rng =
                    SplitMix64::derive(seed, (layer * Target::ALL.len()) as u64 + target as u64);
                let pair = LoraLinear::init(config.rank, d_in, d_out, config.scale(), &mut rng);
                modules.insert((layer, target), pair);
            }
        }
        Ok(Adapter {
            config,
            n_layers: model.n_layers,
            modules,
        })
    }

    /// An adapter from loaded pairs; `name(layer, target)` names a pair in errors (the key in
    /// the file it came from). Every (layer, target) the config implies must be present with
    /// the base's shapes and the config's rank, and no other.
    pub fn from_modules(
        config: LoraConfig,
        model: &ModelConfig,
        mut modules: BTreeMap<(usize, Target), LoraLinear>,
        name: &dyn Fn(usize, Target) -> String,
    ) -> Result<Self> {
        config.validate(model)?;
        let layers = config.layer_range(model.n_layers);
        if let Some(&(layer, target)) = modules
            .keys()
            .find(|(l, t)| !layers.contains(l) || !config.targets.contains(t))
        {
            return Err(ModelError::Config(format!(
                "adapter tensor `{}` is outside the adapter's own config (layers {layers:?}, \
                 targets {}); fix the adapter_config.json that came with it",
                name(layer, target),
                config.targets_list()
            )));
        }
        for layer in layers.clone() {
            for &target in &config.targets {
                let key = name(layer, target);
                let pair = modules.get_mut(&(layer, target)).ok_or_else(|| {
                    ModelError::Config(format!(
                        "adapter tensor `{key}` is missing: the adapter's config adapts {} in \
                         layers {layers:?}; the adapter is incomplete or its config was edited",
                        config.targets_list()
                    ))
                })?;
                let (d_out, d_in) = target.shape(model);
                let expected = [config.rank, d_in, d_out];
                let found = [pair.rank(), pair.d_in(), pair.d_out()];
                if expected != found {
                    return Err(ModelError::Config(format!(
                        "adapter tensor `{key}` has rank {}, in {}, out {} but this base model's \
                         {target} with rank {} needs in {d_in}, out {d_out}; the adapter was \
                         trained for a different base model, pass that one",
                        found[0], found[1], found[2], config.rank
                    )));
                }
                pair.scale = config.scale();
            }
        }
        Ok(Adapter {
            config,
            n_layers: model.n_layers,
            modules,
        })
    }

    /// The config it was built with.
    pub fn config(&self) -> &LoraConfig {
        &self.config
    }

    /// Number of blocks of the base model it fits.
    pub fn n_layers(&self) -> usize {
        self.n_layers
    }

    /// The pair adapting `target` of block `layer`, if that projection is adapted.
    pub fn get(&self, layer: usize, target: Target) -> Option<&LoraLinear> {
        self.modules.get(&(layer, target))
    }

    /// The pair adapting `target` of block `layer`, mutable (for the optimizer).
    pub fn get_mut(&mut self, layer: usize, target: Target) -> Option<&mut LoraLinear> {
        self.modules.get_mut(&(layer, target))
    }

    /// Every adapted projection, by layer then target.
    pub fn modules(&self) -> impl Iterator<Item = ((usize, Target), &LoraLinear)> {
        self.modules.iter().map(|(&k, v)| (k, v))
    }

    /// Every adapted projection, mutable (for the optimizer and as a gradient accumulator).
    pub fn modules_mut(&mut self) -> impl Iterator<Item = ((usize, Target), &mut LoraLinear)> {
        self.modules.iter_mut().map(|(&k, v)| (k, v))
    }

    /// The pairs of block `layer`, indexed by `Target as usize` (`None` where not adapted).
    pub fn layer(&self, layer: usize) -> [Option<&LoraLinear>; 7] {
        Target::ALL.map(|t| self.get(layer, t))
    }

    /// An adapter of zeros with this one's shapes: the gradient accumulator of adapter
    /// training, as [`Params`] doubles as the gradients of a model.
    pub fn zeros_like(&self) -> Adapter {
        Adapter {
            config: self.config.clone(),
            n_layers: self.n_layers,
            modules: self
                .modules
                .iter()
                .map(|(&k, v)| (k, v.zeros_like()))
                .collect(),
        }
    }

    /// The lowest layer any pair adapts (`None` for an adapter of no pairs): a backward pass
    /// needs no gradient below it.
    pub fn lowest_layer(&self) -> Option<usize> {
        self.modules.keys().next().map(|&(layer, _)| layer)
    }

    /// Overwrites every `A` and `B` with `other`'s, which must have the same shape
    /// ([`Adapter::same_shape`], else an error): refreshes a held copy in place, without
    /// allocating.
    pub fn copy_values_from(&mut self, other: &Adapter) -> Result<()> {
        if !self.same_shape(other) {
            return Err(ModelError::Internal(
                "an adapter's values were copied from one of another shape".into(),
            ));
        }
        for (mine, theirs) in self.modules.values_mut().zip(other.modules.values()) {
            mine.a.data_mut().copy_from_slice(theirs.a.data());
            mine.b.data_mut().copy_from_slice(theirs.b.data());
        }
        Ok(())
    }

    /// Whether `other` has exactly this adapter's config and pairs (e.g. gradients for it).
    pub fn same_shape(&self, other: &Adapter) -> bool {
        self.config == other.config
            && self.n_layers == other.n_layers
            && self.modules.keys().eq(other.modules.keys())
            && self
                .modules
                .values()
                .zip(other.modules.values())
                .all(|(a, b)| a.a.shape() == b.a.shape() && b.b.shape() == a.b.shape())
    }

    /// Trainable scalars (all `A` and `B` entries).
    pub fn num_params(&self) -> usize {
        self.modules.values().map(|p| p.a.len() + p.b.len()).sum()
    }

    /// Folds every pair into `params` (`W += s·B·A`), giving a plain model that computes what
    /// base plus adapter did.
    pub fn fuse_into(&self, params: &mut Params) -> Result<()> {
        if params.layers.len() != self.n_layers {
            return Err(ModelError::Config(format!(
                "the adapter was made for a base with {} layers but this model has {}; pass the \
                 base model it was trained on",
                self.n_layers,
                params.layers.len()
            )));
        }
        if !params.holds_block_matrices() {
            return Err(ModelError::Options(
                "the base holds only the shapes of its block matrices (a LoRA run's base \
                 staged on the device); fuse into the base model loaded from its file"
                    .into(),
            ));
        }
        for (&(layer, target), pair) in &self.modules {
            pair.fuse_into(target.get_mut(&mut params.layers[layer]))?;
        }
        Ok(())
    }
}

impl ParamSet for Adapter {
    /// `model.layers.{i}.{module}.lora_A.weight` / `lora_B.weight`, by layer then target.
    fn tensors(&self) -> Vec<(String, TensorView<'_>)> {
        let mut out = Vec::with_capacity(2 * self.modules.len());
        for (&(layer, target), pair) in &self.modules {
            let [a, b] = pair_names(layer, target);
            out.push((a, pair.a.view()));
            out.push((b, pair.b.view()));
        }
        out
    }

    fn tensors_mut(&mut self) -> Vec<(String, TensorViewMut<'_>)> {
        let mut out = Vec::with_capacity(2 * self.modules.len());
        for (&(layer, target), pair) in &mut self.modules {
            let [a, b] = pair_names(layer, target);
            out.push((a, pair.a.view_mut()));
            out.push((b, pair.b.view_mut()));
        }
        out
    }
}

/// The names of a pair's `A` and `B` in optimizer state and gradient reports.
fn pair_names(layer: usize, target: Target) -> [String; 2] {
    let module = format!("model.layers.{layer}.{}", target.module_path());
    [
        format!("{module}.lora_A.weight"),
        format!("{module}.lora_B.weight"),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lora::config::Layers;

    #[test]
    fn init_adapts_the_configured_layers_and_targets_with_zero_b() {
        let model = ModelConfig::preset("tiny").unwrap();
        let config = LoraConfig {
            targets: vec![Target::KProj, Target::DownProj],
            layers: Layers::Top(1),
            ..LoraConfig::default()
        };
        let adapter = Adapter::init(config, &model, 3).unwrap();
        let top = model.n_layers - 1;
        let keys: Vec<_> = adapter.modules().map(|(k, _)| k).collect();
        assert_eq!(keys, vec![(top, Target::KProj), (top, Target::DownProj)]);
        let down = adapter.get(top, Target::DownProj).unwrap();
        assert_eq!((down.d_out(), down.d_in()), (model.dim, model.hidden_dim));
        assert!(down.b.data().iter().all(|&v| v == 0.0));
        assert!(down.a.data().iter().any(|&v| v != 0.0));
        assert_eq!(
            adapter,
            Adapter::init(adapter.config().clone(), &model, 3).unwrap()
        );
    }

    #[test]
    fn fusing_a_fresh_adapter_leaves_the_weights_unchanged() {
        let model = ModelConfig::preset("tiny").unwrap();
        let params = Params::init(&model, 1).unwrap();
        let adapter = Adapter::init(LoraConfig::default(), &model, 2).unwrap();
        let mut fused = params.clone();
        adapter.fuse_into(&mut fused).unwrap();
        assert_eq!(fused, params);
    }
}
