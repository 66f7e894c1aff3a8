//! Matrix-vector products: a matmul whose one side is a single row or column (a width-1
//! decode step, the classifier over one token). gemm packs its operands into panels for its
//! microkernels, which for a vector costs more than the product itself; these loops stream
//! the matrix once, as dot products along contiguous rows or as `y += x_c · column_c` along
//! contiguous columns, split over rayon threads by output rows when large.

use rayon::prelude::*;

use super::gemm::{MatRef, PAR_MACS};

/// Outputs per rayon task: enough work per task that scheduling stays negligible.
const ROWS_PER_TASK: usize = 256;

/// `dst (+)= lhs · rhs` when one side is a vector and the matrix has a contiguous axis;
/// returns false (nothing written) for any other case, which gemm handles. Operands were
/// bounds-checked by the caller. Each output is summed in a fixed order on one thread, so
/// results do not depend on the thread count.
#[allow(clippy::too_many_arguments)]
pub(crate) fn try_gemv(
    dst: &mut [f32],
    dst_rs: usize,
    lhs: MatRef<'_>,
    rhs: MatRef<'_>,
    m: usize,
    n: usize,
    k: usize,
    accumulate: bool,
    parallel: bool,
) -> bool {
    // y = A x with A p × q: for n == 1, A = lhs and y is dst's column; for m == 1,
    // yᵀ = xᵀ rhs, so A = rhsᵀ and y is dst's row.
    let (a, p, x, x_stride, y) = if n == 1 && (m == 1 || dst_rs == 1) {
        (lhs, m, rhs, rhs.rs, &mut dst[..m])
    } else if m == 1 {
        let a = MatRef {
            data: rhs.data,
            offset: rhs.offset,
            rs: rhs.cs,
            cs: rhs.rs,
        };
        (a, n, lhs, lhs.cs, &mut dst[..n])
    } else {
        return false;
    };
    let q = k;
    let rows_contiguous = a.cs == 1 && a.rs > 0;
    let cols_contiguous = a.rs == 1 && a.cs > 0;
    if !(rows_contiguous || cols_contiguous) || x_stride < 0 {
        return false;
    }
    // A contiguous vector is read in place; a strided one (q ≤ a few thousand) is gathered.
    let gathered: Vec<f32>;
    let xv: &[f32] = if x_stride == 1 || q == 1 {
        &x.data[x.offset as usize..][..q]
    } else {
        gathered = (0..q)
            .map(|i| x.data[(x.offset + i as isize * x_stride) as usize])
            .collect();
        &gathered
    };
    let threads = parallel && p * q >= PAR_MACS;
    let base = a.offset as usize;
    let block = |r0: usize, out: &mut [f32]| {
        if rows_contiguous {
            let rs = a.rs as usize;
            for (i, o) in out.iter_mut().enumerate() {
                let row = &a.data[base + (r0 + i) * rs..][..q];
                let v = dot(row, xv);
                *o = if accumulate { *o + v } else { v };
            }
        } else {
            let cs = a.cs as usize;
            if !accumulate {
                out.fill(0.0);
            }
            for (c, &xc) in xv.iter().enumerate() {
                let col = &a.data[base + c * cs + r0..][..out.len()];
                axpy(out, xc, col);
            }
        }
    };
    if threads {
        y.par_chunks_mut(ROWS_PER_TASK)
            .enumerate()
            .for_each(|(i, out)| block(i * ROWS_PER_TASK, out));
    } else {
        block(0, y);
    }
    true
}

/// Lanes summed side by side: wide enough for the compiler to keep two AVX-512 (or four
/// AVX2) accumulators busy, in an order fixed by the length alone.
const LANES: usize = 32;

crate::simd_versions! {
    /// `Σ a_i b_i` over equal-length slices, in [`LANES`] fixed lanes, in the widest vectors
    /// the CPU has.
    fn dot(a: &[f32], b: &[f32]) -> f32 {
        let mut acc = [0.0f32; LANES];
        let (ac, bc) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
        let tail: f32 = ac
            .remainder()
            .iter()
            .zip(bc.remainder())
            .map(|(x, y)| x * y)
            .sum();
        for (x, y) in ac.zip(bc) {
            for l in 0..LANES {
                acc[l] += x[l] * y[l];
            }
        }
        acc.iter().sum::<f32>() + tail
    }
}

crate::simd_versions! {
    /// `y += alpha · x` over equal-length slices, in the widest vectors the CPU has.
    fn axpy(y: &mut [f32], alpha: f32, x: &[f32]) {
        for (o, &v) in y.iter_mut().zip(x) {
            *o += alpha * v;
        }
    }
}
