//! The one bounds-checked front to `gemm::gemm` (the CPU device and the model's host-side
//! products both call it). gemm takes arbitrary row and column strides, so transposed and
//! sliced views are multiplied in place without packing copies.

use crate::error::{DeviceError, Result};
use gemm::Parallelism;
use rayon::prelude::*;

/// Multiply-adds (m·n·k) above which one product is worth spreading over rayon threads;
/// below it thread start-up costs more than it saves.
pub const PAR_MACS: usize = 1 << 18;

/// Pieces a long-`k` product is cut into ([`splits_k`]): a constant, not the thread count,
/// so each output is summed in the same order on every machine.
const K_PIECES: usize = 8;

/// Whether `m×k · k×n` is a long-`k` product with a small result, like the classifier's
/// input gradient `Eᵀ·dlogits` (288×32000 · 32000×256 at stories15M): gemm spreads threads
/// over the result's tiles, too few here to keep them busy (163 GFLOP/s against 250 for a
/// square product on 2 cores), so such products are cut along `k` instead ([`K_PIECES`]
/// partial products in parallel, added in order: 251 GFLOP/s). Only while the partials stay
/// small ([`SPLIT_MAX_RESULT`]), so the cut never costs real memory.
fn splits_k(m: usize, n: usize, k: usize) -> bool {
    k >= 8 * m.max(n) && m * n * k >= PAR_MACS * K_PIECES && m * n <= SPLIT_MAX_RESULT
}

/// The largest result (elements) cut along `k`: [`K_PIECES`] partials of it are 32 MiB. A
/// 4096-wide model's classifier gradient over 256 positions is 1M elements.
const SPLIT_MAX_RESULT: usize = 1 << 20;

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
    if parallel && splits_k(m, n, k) {
        matmul_split_k(dst, dst_rs, lhs, rhs, m, n, k, accumulate);
        return Ok(());
    }
    // SAFETY: as below, for the operands bounds-checked above.
    unsafe { gemm_unchecked(dst, dst_rs, lhs, rhs, m, n, k, accumulate, parallel) };
    Ok(())
}

/// [`matmul_into`] as [`K_PIECES`] partial products over consecutive `k` ranges, one rayon
/// task each, then `dst (+)= Σ partials` in piece order. Costs `K_PIECES·m·n` floats of
/// scratch and one pass over them, small against the product ([`splits_k`]). With more
/// threads than pieces each piece is also spread over them (gemm splits the result's tiles,
/// which changes no sum); with fewer that only costs (3% on 2 cores).
#[allow(clippy::too_many_arguments)]
fn matmul_split_k(
    dst: &mut [f32],
    dst_rs: usize,
    lhs: MatRef<'_>,
    rhs: MatRef<'_>,
    m: usize,
    n: usize,
    k: usize,
    accumulate: bool,
) {
    let piece = k.div_ceil(K_PIECES);
    let nested = rayon::current_num_threads() > K_PIECES;
    let mut partials = vec![0f32; K_PIECES * m * n];
    partials
        .par_chunks_mut(m * n)
        .enumerate()
        .for_each(|(p, part)| {
            let start = p * piece;
            let len = piece.min(k.saturating_sub(start));
            let lhs = MatRef {
                offset: lhs.offset + start as isize * lhs.cs,
                ..lhs
            };
            let rhs = MatRef {
                offset: rhs.offset + start as isize * rhs.rs,
                ..rhs
            };
            // SAFETY: columns `start..start + len` of `lhs` and rows of `rhs` lie inside the
            // operands the caller bounds-checked; `part` is a packed m×n buffer of its own.
            unsafe { gemm_unchecked(part, n, lhs, rhs, m, n, len, false, nested) };
        });
    for (i, row) in dst.chunks_mut(dst_rs).take(m).enumerate() {
        for (j, d) in row[..n].iter_mut().enumerate() {
            let sum = partials[i * n + j..].iter().step_by(m * n).sum::<f32>();
            *d = if accumulate { *d + sum } else { sum };
        }
    }
}

/// `gemm::gemm` of [`matmul_into`]'s arguments (`k > 0`; a `k` of 0 leaves gemm's `dst` as
/// is, so `accumulate = false` with `k = 0` must be handled by the caller).
///
/// # Safety
/// Every element of the three strided matrices must lie inside its slice.
#[allow(clippy::too_many_arguments)]
unsafe fn gemm_unchecked(
    dst: &mut [f32],
    dst_rs: usize,
    lhs: MatRef<'_>,
    rhs: MatRef<'_>,
    m: usize,
    n: usize,
    k: usize,
    accumulate: bool,
    parallel: bool,
) {
    let parallelism = if parallel && m * n * k >= PAR_MACS {
        Parallelism::Rayon(0)
    } else {
        Parallelism::None
    };
    // SAFETY: the caller guarantees the bounds; `dst` is borrowed mutably and cannot alias the
    // shared `lhs`/`rhs` borrows.
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
}
