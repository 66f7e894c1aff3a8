//! The one bounds-checked front to `gemm::gemm` (the CPU device and the model's host-side
//! products both call it). gemm takes arbitrary row and column strides, so transposed and
//! sliced views are multiplied in place without packing copies.

use crate::error::{DeviceError, Result};
use gemm::Parallelism;

/// Multiply-adds (m·n·k) above which one product is worth spreading over rayon threads;
/// below it thread start-up costs more than it saves.
pub const PAR_MACS: usize = 1 << 18;

/// A strided matrix inside a slice: element `(i, j)` is `data[offset + i*rs + j*cs]`.
#[derive(Clone, Copy, Debug)]
pub struct MatRef<'a> {
    pub data: &'a [f32],
    pub offset: isize,
    pub rs: isize,
    pub cs: isize,
}

/// Whether every element of a `rows × cols` strided matrix lies inside `len` elements.
fn in_bounds(len: usize, offset: isize, rows: usize, cols: usize, rs: isize, cs: isize) -> bool {
    if rows == 0 || cols == 0 {
        return true;
    }
    let ends = [(rows - 1) as isize * rs, (cols - 1) as isize * cs];
    let lo = offset + ends.iter().filter(|&&e| e < 0).sum::<isize>();
    let hi = offset + ends.iter().filter(|&&e| e > 0).sum::<isize>();
    lo >= 0 && (hi as usize) < len
}

/// `dst[m×n] (+)= lhs[m×k] · rhs[k×n]`, `dst` packed with row stride `dst_rs`. With
/// `accumulate` the product is added to `dst`'s contents, else it overwrites them.
/// Cost: 2·m·n·k flops in gemm's packed microkernels.
#[allow(clippy::too_many_arguments)]
pub fn matmul_into(
    dst: &mut [f32],
    dst_rs: usize,
    lhs: MatRef<'_>,
    rhs: MatRef<'_>,
    m: usize,
    n: usize,
    k: usize,
    accumulate: bool,
    parallel: bool,
) -> Result<()> {
    let ok = in_bounds(dst.len(), 0, m, n, dst_rs as isize, 1)
        && in_bounds(lhs.data.len(), lhs.offset, m, k, lhs.rs, lhs.cs)
        && in_bounds(rhs.data.len(), rhs.offset, k, n, rhs.rs, rhs.cs);
    if !ok {
        return Err(DeviceError::Runtime(format!(
            "internal error: matmul operand out of bounds ({m}x{k} by {k}x{n}); please report this program"
        )));
    }
    if m == 0 || n == 0 {
        return Ok(());
    }
    if k == 0 {
        if !accumulate {
            for row in dst.chunks_mut(dst_rs).take(m) {
                row[..n].fill(0.0);
            }
        }
        return Ok(());
    }
    if super::gemv::try_gemv(dst, dst_rs, lhs, rhs, m, n, k, accumulate, parallel) {
        return Ok(());
    }
    let parallelism = if parallel && m * n * k >= PAR_MACS {
        Parallelism::Rayon(0)
    } else {
        Parallelism::None
    };
    // SAFETY: every element gemm reads or writes was checked to lie inside its slice above;
    // `dst` is borrowed mutably and cannot alias the shared `lhs`/`rhs` borrows.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            dst_rs as isize,
            accumulate,
            lhs.data.as_ptr().offset(lhs.offset),
            lhs.cs,
            lhs.rs,
            rhs.data.as_ptr().offset(rhs.offset),
            rhs.cs,
            rhs.rs,
            1.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        );
    }
    Ok(())
}
