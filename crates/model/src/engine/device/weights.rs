//! How a layer's weights reach its kernels. Where the device reads host memory in place (the
//! CPU), each stacked matrix `W` is written once per update into one buffer that the forward
//! kernel reads as `Wᵀ` and the backward kernel as `W`, so the weights are held once more
//! instead of twice and nothing is transposed. Elsewhere (the ANE's fp16 surfaces) every
//! kernel gets its own staged copy.

use std::sync::Arc;

use anetrain_device::{DeviceError, Kernel, SharedMatrix};

use super::block::WEIGHT_ROLES;
use crate::error::{ModelError, Result};
use crate::kernels::{device_error, share_weights, stack_weights, stage_weights, Role};
use crate::params::LayerParams;

/// Forward roles whose backward partner (the same `W`) reads the same stacked buffer.
const PAIRS: [(Role, Role); 4] = [
    (Role::QkvFwd, Role::QkvBwd),
    (Role::WoFwd, Role::WoBwd),
    (Role::FfnUpFwd, Role::FfnUpBwd),
    (Role::FfnDownFwd, Role::FfnDownBwd),
];

/// One layer's staging state.
pub(super) struct LayerWeights {
    /// Per [`PAIRS`] entry, the stacked `W` its kernels read in place; `None` once the device
    /// has refused to read in place, so the layer stages copies.
    shared: Option<Vec<Arc<Vec<f32>>>>,
    /// The transpose buffer of [`stage_weights`] (grown on first use).
    scratch: Vec<f32>,
}

impl LayerWeights {
    /// A layer that tries in-place reading first.
    pub(super) fn new() -> LayerWeights {
        LayerWeights {
            shared: Some(PAIRS.iter().map(|_| Arc::new(Vec::new())).collect()),
            scratch: Vec::new(),
        }
    }

    /// Gives `kernels` (one per [`WEIGHT_ROLES`] entry) the weights of `l` for sequences of
    /// `seq` tokens.
    pub(super) fn stage(
        &mut self,
        l: &LayerParams,
        seq: usize,
        kernels: &mut [Box<dyn Kernel>],
    ) -> Result<()> {
        if let Some(buffers) = &mut self.shared {
            match share(buffers, l, seq, kernels)? {
                Ok(()) => return Ok(()),
                Err(_) => {
                    for k in kernels.iter_mut() {
                        k.unshare_inputs();
                    }
                    self.shared = None;
                }
            }
        }
        for (kernel, role) in kernels.iter_mut().zip(WEIGHT_ROLES) {
            stage_weights(role, l, seq, kernel.as_mut(), &mut self.scratch)?;
        }
        Ok(())
    }
}

fn kernel_of(kernels: &mut [Box<dyn Kernel>], role: Role) -> Result<&mut dyn Kernel> {
    let i = WEIGHT_ROLES.iter().position(|&r| r == role);
    match i.and_then(|i| kernels.get_mut(i)) {
        Some(k) => Ok(k.as_mut()),
        None => Err(ModelError::Config(format!(
            "no per-layer kernel `{}` was compiled",
            role.name()
        ))),
    }
}

/// Restacks every pair's buffer and shares it with both kernels. The outer error is a
/// failure; the inner one means the device needs copies.
fn share(
    buffers: &mut [Arc<Vec<f32>>],
    l: &LayerParams,
    seq: usize,
    kernels: &mut [Box<dyn Kernel>],
) -> Result<std::result::Result<(), DeviceError>> {
    // The kernels must let go of the buffers before they are rewritten in place.
    for k in kernels.iter_mut() {
        k.unshare_inputs();
    }
    for (buffer, &(fwd, bwd)) in buffers.iter_mut().zip(&PAIRS) {
        // Reuses the allocation unless something still reads the old weights.
        let mut data = Arc::get_mut(buffer).map(std::mem::take).unwrap_or_default();
        let (rows, cols) = stack_weights(fwd, l, &mut data)?;
        *buffer = Arc::new(data);
        let w = SharedMatrix::row_major(Arc::clone(buffer), rows, cols)
            .map_err(|e| device_error(fwd.name(), e))?;
        for role in [fwd, bwd] {
            match share_weights(role, &w, seq, kernel_of(kernels, role)?) {
                Ok(()) => {}
                Err(e @ DeviceError::Unavailable(_)) => return Ok(Err(e)),
                Err(e) => return Err(device_error(role.name(), e)),
            }
        }
    }
    Ok(Ok(()))
}
