//! How the layers' weights reach their kernels. Where the device reads host memory in place
//! (the CPU), the kernels read the master weights themselves, which [`crate::params::Stack`]
//! holds in the layout they multiply by: one kernel per role serves every layer, lent each
//! layer's weights just before it runs, so the weights exist once, nothing is copied or
//! transposed per update, and the kernels' own activation buffers exist once rather than per
//! layer. Elsewhere (the ANE's fp16 surfaces) each layer has its own kernels with their own
//! staged copy, written at [`LayerKernels::stage`].

use anetrain_device::{Device, Kernel};
use rayon::prelude::*;

use super::block::WEIGHT_ROLES;
use crate::config::ModelConfig;
use crate::error::{ModelError, Result};
use crate::kernels::{device_error, share_weights, stage_weights, KernelForms};
use crate::params::{LayerParams, Params};

/// The weight-bearing kernels of every layer, one per [`WEIGHT_ROLES`] entry each.
pub(super) struct LayerKernels {
    /// One kernel list per layer, or, when the device reads weights in place, a single list
    /// that every layer's weights are lent to in turn.
    sets: Vec<Vec<Box<dyn Kernel>>>,
    seq: usize,
    /// Whether the device reads the weights in place (so `sets` holds one list).
    in_place: bool,
    /// Per kernel list, the transpose buffer of [`stage_weights`] (grown on first use).
    scratch: Vec<Vec<f32>>,
}

impl LayerKernels {
    /// Compiles the per-layer kernels of `config` for `seq` tokens and finds out, with the
    /// first layer of `params`, whether `device` reads weights in place; staging is left to
    /// [`LayerKernels::stage`].
    pub(super) fn new(
        config: &ModelConfig,
        device: &dyn Device,
        seq: usize,
        forms: KernelForms,
        params: &Params,
    ) -> Result<LayerKernels> {
        let mut sets: Vec<Vec<Box<dyn Kernel>>> =
            (0..config.n_layers).map(|_| Vec::new()).collect();
        for role in WEIGHT_ROLES {
            let bundle = role.build(config, seq, forms)?;
            let copies = device
                .compile_copies(&bundle.program, &bundle.weights, config.n_layers)
                .map_err(|e| device_error(role.name(), e))?;
            for (kernels, copy) in sets.iter_mut().zip(copies) {
                kernels.push(copy);
            }
        }
        let first = params.layers.first().ok_or_else(|| {
            ModelError::Config("the model has no layers; set n_layers to at least 1".into())
        })?;
        let in_place = match sets.first_mut() {
            Some(kernels) => {
                let shared = share_all(first, seq, kernels);
                release(kernels);
                shared?
            }
            None => false,
        };
        if in_place {
            // Forks are cheap to drop: the spare copies never held a buffer.
            sets.truncate(1);
        }
        Ok(LayerKernels {
            scratch: sets.iter().map(|_| Vec::new()).collect(),
            sets,
            seq,
            in_place,
        })
    }

    /// Makes `params` what the kernels compute with: stages copies of every layer on a device
    /// that needs them (in parallel: each layer has its own kernels and buffers), nothing
    /// where [`LayerKernels::layer`] lends the weights.
    pub(super) fn stage(&mut self, params: &Params) -> Result<()> {
        if self.in_place {
            return Ok(());
        }
        if !params.holds_block_matrices() {
            return Err(shape_only());
        }
        let seq = self.seq;
        self.sets
            .par_iter_mut()
            .zip(&mut self.scratch)
            .zip(&params.layers)
            .try_for_each(|((kernels, scratch), layer)| {
                for (kernel, role) in kernels.iter_mut().zip(WEIGHT_ROLES) {
                    stage_weights(role, layer, seq, kernel.as_mut(), scratch)?;
                }
                Ok(())
            })
    }

    /// Layer `l`'s kernels, ready to run with `layer`'s weights (lent in place, or the copy
    /// staged last). [`LayerKernels::release`] must end the pass.
    pub(super) fn layer(
        &mut self,
        l: usize,
        layer: &LayerParams,
    ) -> Result<&mut [Box<dyn Kernel>]> {
        let (in_place, seq) = (self.in_place, self.seq);
        let index = if in_place { 0 } else { l };
        let kernels = self
            .sets
            .get_mut(index)
            .ok_or_else(|| ModelError::Config(format!("no kernels were compiled for layer {l}")))?;
        if in_place && !layer.holds_matrices() {
            return Err(shape_only());
        }
        if in_place && !share_all(layer, seq, kernels)? {
            return Err(ModelError::Internal(
                "the device stopped reading weights in place".into(),
            ));
        }
        Ok(kernels)
    }

    /// Whether each layer's kernels hold their own staged copy of its weights, so the host's
    /// are not read again until the next [`LayerKernels::stage`].
    pub(super) fn copies(&self) -> bool {
        !self.in_place
    }

    /// Drops every kernel's hold on lent weights, so they are free to change between passes
    /// without a copy.
    pub(super) fn release(&mut self) {
        if self.in_place {
            for kernels in &mut self.sets {
                release(kernels);
            }
        }
    }
}

/// The error of staging (or lending) weights whose block matrices were dropped after an
/// earlier staging: the kernels would compute with nothing.
fn shape_only() -> ModelError {
    ModelError::Internal(
        "the block matrices were freed after staging (a LoRA run's frozen base on a device \
         with its own copy), so they cannot be staged again; reload the base model and stage \
         that"
            .into(),
    )
}

/// Drops `kernels`' hold on lent weights.
fn release(kernels: &mut [Box<dyn Kernel>]) {
    for k in kernels.iter_mut() {
        k.unshare_inputs();
    }
}

/// Shares `l`'s stacks with every kernel; `false` when the device needs copies.
fn share_all(l: &LayerParams, seq: usize, kernels: &mut [Box<dyn Kernel>]) -> Result<bool> {
    for (kernel, role) in kernels.iter_mut().zip(WEIGHT_ROLES) {
        if share_weights(role, l, seq, kernel.as_mut())?.is_err() {
            return Ok(false);
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use anetrain_data::Batch;
    use anetrain_device::{CpuDevice, Precision};

    use crate::config::ModelConfig;
    use crate::engine::{DeviceEngine, Engine};
    use crate::params::Params;

    #[test]
    fn weights_freed_after_staging_are_never_staged_or_lent_again() {
        let c = ModelConfig::preset("tiny").unwrap();
        let mut params = Params::init(&c, 1).unwrap();
        let device = |p| Box::new(CpuDevice::new(p));
        let mut copying = DeviceEngine::new(&c, device(Precision::F16), 8, &params).unwrap();
        let mut in_place = DeviceEngine::new(&c, device(Precision::F32), 8, &params).unwrap();
        assert!(copying.holds_own_copy() && !in_place.holds_own_copy());
        params.drop_block_matrices();
        let batch = Batch::from_rows(&[(0..9).collect()], None).unwrap();
        // The staged copy still computes; a restage would have nothing to copy.
        copying.loss(&params, &batch).unwrap();
        let restage = copying.stage(&params).unwrap_err().to_string();
        assert!(restage.contains("freed after staging"), "{restage}");
        let lent = in_place.loss(&params, &batch).unwrap_err().to_string();
        assert!(lent.contains("freed after staging"), "{lent}");
    }
}
