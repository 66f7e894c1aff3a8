//! Staging: writing a layer's weights into the matrix columns of a dynamic-matmul kernel's
//! input, once per parameter update (the activation columns are rewritten every run), or, on
//! devices that read host memory in place, stacking them once into a matrix that the forward
//! and backward kernels of the same weights both read.

use anetrain_device::{DeviceError, Kernel, SharedMatrix};

use crate::error::{ModelError, Result};
use crate::params::{LayerParams, Linear};

use super::Role;

/// The projections stacked (by rows) into the matrix `W` a role multiplies by, and whether
/// the staged `M` is `Wᵀ` (forward, `y = W a`) or `W` itself (backward, `dx = Wᵀ dy`).
fn blocks(role: Role) -> (&'static [Linear], bool) {
    const QKV: &[Linear] = &[Linear::QProj, Linear::KProj, Linear::VProj];
    const UP: &[Linear] = &[Linear::GateProj, Linear::UpProj];
    match role {
        Role::QkvFwd => (QKV, true),
        Role::WoFwd => (&[Linear::OProj], true),
        Role::FfnUpFwd => (UP, true),
        Role::FfnDownFwd => (&[Linear::DownProj], true),
        Role::FfnDownBwd => (&[Linear::DownProj], false),
        Role::FfnUpBwd => (UP, false),
        Role::WoBwd => (&[Linear::OProj], false),
        Role::QkvBwd => (QKV, false),
        Role::AttentionFwd | Role::AttentionBwd => (&[], false),
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
    let (blocks, transpose) = blocks(role);
    let mut offset = 0;
    for w in blocks.iter().map(|b| b.get(l)) {
        let &[rows, cols] = w.shape() else {
            return Err(ModelError::Input(format!(
                "kernel `{}` stages a matrix but got a tensor of shape {:?}",
                role.name(),
                w.shape()
            )));
        };
        let written = if transpose {
            // M = Wᵀ: channel i holds column i of W, at the block's column offset.
            scratch.clear();
            scratch.resize(rows * cols, 0.0);
            transpose_into(w.data(), rows, cols, scratch);
            kernel.write_input_region(0, 0..cols, seq + offset..seq + offset + rows, scratch)
        } else {
            // M = W: the block's rows are the input channels after the ones already staged.
            kernel.write_input_region(0, offset..offset + rows, seq..seq + cols, w.data())
        };
        written.map_err(|e| device_error(role.name(), e))?;
        offset += rows;
    }
    Ok(())
}

/// Writes layer `l`'s weights for `role`, stacked by rows (`W`, the matrix `role`'s staged `M`
/// is or is the transpose of), into `dst`; returns `W`'s `(rows, cols)`.
pub fn stack_weights(role: Role, l: &LayerParams, dst: &mut Vec<f32>) -> Result<(usize, usize)> {
    dst.clear();
    let mut shape = (0, 0);
    for w in blocks(role).0.iter().map(|b| b.get(l)) {
        let &[rows, cols] = w.shape() else {
            return Err(ModelError::Input(format!(
                "kernel `{}` stacks matrices but got a tensor of shape {:?}",
                role.name(),
                w.shape()
            )));
        };
        if shape.0 > 0 && cols != shape.1 {
            return Err(ModelError::Input(format!(
                "kernel `{}` stacks matrices of {} and {cols} columns; they must agree",
                role.name(),
                shape.1
            )));
        }
        dst.extend_from_slice(w.data());
        shape = (shape.0 + rows, cols);
    }
    Ok(shape)
}

/// Makes `kernel` read its matrix columns in place from `w`, the [`stack_weights`] of its
/// role: transposed for forward roles. `Unavailable` when the device needs its own copy.
pub fn share_weights(
    role: Role,
    w: &SharedMatrix,
    seq: usize,
    kernel: &mut dyn Kernel,
) -> std::result::Result<(), DeviceError> {
    let m = if blocks(role).1 {
        w.transposed()
    } else {
        w.clone()
    };
    kernel.share_input_region(0, 0..m.rows(), seq..seq + m.cols(), &m)
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
