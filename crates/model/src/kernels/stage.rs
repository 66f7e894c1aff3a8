//! Staging: writing a layer's weights into the matrix columns of a dynamic-matmul kernel's
//! input, once per parameter update (the activation columns are rewritten every run), or, on
//! devices that read host memory in place, pointing those columns at the layer's stacked
//! master weights ([`Stack`]), which the forward and backward kernels of the same weights
//! both read.

use anetrain_device::{DeviceError, Kernel, SharedMatrix};

use crate::error::{ModelError, Result};
use crate::params::{Group, LayerParams, Stack};

use super::Role;

/// The stack `W` a role multiplies by, and whether the staged `M` is `Wᵀ` (forward,
/// `y = W a`) or `W` itself (backward, `dx = Wᵀ dy`); `None` for the attention kernels.
fn group(role: Role) -> Option<(Group, bool)> {
    match role {
        Role::QkvFwd => Some((Group::Qkv, true)),
        Role::WoFwd => Some((Group::O, true)),
        Role::FfnUpFwd => Some((Group::GateUp, true)),
        Role::FfnDownFwd => Some((Group::Down, true)),
        Role::FfnDownBwd => Some((Group::Down, false)),
        Role::FfnUpBwd => Some((Group::GateUp, false)),
        Role::WoBwd => Some((Group::O, false)),
        Role::QkvBwd => Some((Group::Qkv, false)),
        Role::AttentionFwd | Role::AttentionBwd => None,
    }
}

/// The stack of layer `l` that `role` multiplies by, and whether it is staged transposed.
fn stack_of(role: Role, l: &LayerParams) -> Result<(&Stack, bool)> {
    match group(role) {
        Some((g, transpose)) => Ok((l.stack(g), transpose)),
        None => Err(ModelError::Input(format!(
            "kernel `{}` carries no weights to stage",
            role.name()
        ))),
    }
}

/// Writes layer `l`'s matrix for `role` into columns `[seq, seq + oc)` of `kernel`'s input.
/// `scratch` is reused for the transposes so restaging allocates only on first use.
/// Cost: one pass over the weights (plus a transpose for forward roles).
pub fn stage_weights(
    role: Role,
    l: &LayerParams,
    seq: usize,
    kernel: &mut dyn Kernel,
    scratch: &mut Vec<f32>,
) -> Result<()> {
    let (w, transpose) = stack_of(role, l)?;
    let (rows, cols) = (w.rows(), w.cols());
    let written = if transpose {
        // M = Wᵀ: channel i holds column i of the stacked W.
        scratch.clear();
        scratch.resize(rows * cols, 0.0);
        transpose_into(w.data(), rows, cols, scratch);
        kernel.write_input_region(0, 0..cols, seq..seq + rows, scratch)
    } else {
        kernel.write_input_region(0, 0..rows, seq..seq + cols, w.data())
    };
    written.map_err(|e| device_error(role.name(), e))
}

/// Makes `kernel` read its matrix columns in place from layer `l`'s stacked weights for
/// `role` (transposed for forward roles) until [`Kernel::unshare_inputs`]. `Unavailable` when
/// the device needs its own copy.
pub fn share_weights(
    role: Role,
    l: &LayerParams,
    seq: usize,
    kernel: &mut dyn Kernel,
) -> Result<std::result::Result<(), DeviceError>> {
    let (w, transpose) = stack_of(role, l)?;
    let m = SharedMatrix::row_major(w.shared(), w.rows(), w.cols())
        .map_err(|e| device_error(role.name(), e))?;
    let m = if transpose { m.transposed() } else { m };
    match kernel.share_input_region(0, 0..m.rows(), seq..seq + m.cols(), &m) {
        Ok(()) => Ok(Ok(())),
        Err(e @ DeviceError::Unavailable(_)) => Ok(Err(e)),
        Err(e) => Err(device_error(role.name(), e)),
    }
}

/// Side of the square tiles [`transpose_into`] walks: 16 × 16 f32 is 1 KiB read and 1 KiB written,
/// so both the source rows and the destination rows of a tile stay in L1.
const TILE: usize = 16;

/// Writes the transpose of `src` (`rows × cols`, row-major) into `dst` (`cols × rows`).
/// Cost: one read and one write per element; tiling keeps the strided side in cache, where a
/// plain row-by-row loop misses on every write once `rows` floats exceed a page.
fn transpose_into(src: &[f32], rows: usize, cols: usize, dst: &mut [f32]) {
    for r0 in (0..rows).step_by(TILE) {
        let r1 = (r0 + TILE).min(rows);
        for c0 in (0..cols).step_by(TILE) {
            let c1 = (c0 + TILE).min(cols);
            for r in r0..r1 {
                let row = &src[r * cols..][c0..c1];
                for (c, &v) in (c0..c1).zip(row) {
                    dst[c * rows + r] = v;
                }
            }
        }
    }
}

/// A device failure while running kernel `kernel`, with the device's own message.
pub(crate) fn device_error(kernel: &str, e: DeviceError) -> ModelError {
    ModelError::Device {
        kernel: kernel.to_string(),
        source: e,
    }
}
