//! How a layer's weights reach its kernels. Where the device reads host memory in place (the
//! CPU), the kernels read the master weights themselves, which [`crate::params::Stack`] holds
//! in the layout they multiply by: each pass lends them for its duration, so the weights
//! exist once and nothing is copied or transposed per update. Elsewhere (the ANE's fp16
//! surfaces) every kernel gets its own staged copy at [`LayerWeights::stage`].

use anetrain_device::Kernel;

use super::block::WEIGHT_ROLES;
use crate::error::Result;
use crate::kernels::{share_weights, stage_weights};
use crate::params::LayerParams;

/// How one layer's kernels get their weights.
enum Mode {
    /// Not known until the first staging asks the device.
    Unknown,
    /// Each pass lends the master weights to the kernels.
    InPlace,
    /// The kernels hold copies, staged once per update; `scratch` is the transpose buffer of
    /// [`stage_weights`] (grown on first use).
    Copies { scratch: Vec<f32> },
}

/// One layer's staging state.
pub(super) struct LayerWeights {
    mode: Mode,
}

impl LayerWeights {
    /// A layer that tries in-place reading first.
    pub(super) fn new() -> LayerWeights {
        LayerWeights {
            mode: Mode::Unknown,
        }
    }

    /// Gives `kernels` (one per [`WEIGHT_ROLES`] entry) the weights of `l` for sequences of
    /// `seq` tokens: copies on a device that needs them, nothing where passes lend them.
    pub(super) fn stage(
        &mut self,
        l: &LayerParams,
        seq: usize,
        kernels: &mut [Box<dyn Kernel>],
    ) -> Result<()> {
        if let Mode::Unknown = self.mode {
            let shared = share_all(l, seq, kernels);
            release(kernels);
            self.mode = match shared? {
                true => Mode::InPlace,
                false => Mode::Copies {
                    scratch: Vec::new(),
                },
            };
        }
        if let Mode::Copies { scratch } = &mut self.mode {
            for (kernel, role) in kernels.iter_mut().zip(WEIGHT_ROLES) {
                stage_weights(role, l, seq, kernel.as_mut(), scratch)?;
            }
        }
        Ok(())
    }

    /// Points `kernels` at `l`'s weights for one pass, where the device reads them in place;
    /// [`release`] must follow, so the weights are free to change between passes.
    pub(super) fn lend(
        &self,
        l: &LayerParams,
        seq: usize,
        kernels: &mut [Box<dyn Kernel>],
    ) -> Result<()> {
        match self.mode {
            Mode::InPlace => share_all(l, seq, kernels).map(|_| ()),
            Mode::Unknown | Mode::Copies { .. } => Ok(()),
        }
    }
}

/// Drops every kernel's hold on lent weights.
pub(super) fn release(kernels: &mut [Box<dyn Kernel>]) {
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
