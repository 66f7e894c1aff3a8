//! Matrix-vector products: a matmul whose one side is a single row or column (a width-1
//! decode step, the classifier over one token). gemm packs its operands into panels for its
//! microkernels, which for a vector costs more than the product itself; these loops stream
//! the matrix once, as dot products along contiguous rows or as `y += x_c · column_c` along
//! contiguous columns, split over rayon threads by output rows when large.

use rayon::prelude::*;

use super::gemm::{MatRef, PAR_MACS};

/// Fewest outputs per rayon task: enough work per task that scheduling stays negligible.
const MIN_ROWS_PER_TASK: usize = 64;
/// Tasks per thread, so an uneven split (e.g. a 768-row matrix on two threads) or a thread
/// the OS takes away costs a fraction of a task, not half the product.
const TASKS_PER_THREAD: usize = 4;
/// Rows [`dot_rows`] sums side by side, sharing each load of the vector.
const ROW_GROUP: usize = 4;

/// Outputs per task for `p` outputs over `threads` threads: an even share, a whole number of
/// row groups, at least [`MIN_ROWS_PER_TASK`].
fn rows_per_task(p: usize, threads: usize) -> usize {
    let share = p.div_ceil(threads.max(1) * TASKS_PER_THREAD);
    round_up(share.max(MIN_ROWS_PER_TASK), ROW_GROUP)
}

/// `n` rounded up to a multiple of `m`.
fn round_up(n: usize, m: usize) -> usize {
    n.div_ceil(m) * m
}

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
            let row = |i: usize| &a.data[base + (r0 + i) * rs..][..q];
            let done = out.len() - out.len() % ROW_GROUP;
            let mut groups = out.chunks_exact_mut(ROW_GROUP);
            for (g, o) in groups.by_ref().enumerate() {
                let i = g * ROW_GROUP;
                let v = dot_rows([row(i), row(i + 1), row(i + 2), row(i + 3)], xv);
                for (o, v) in o.iter_mut().zip(v) {
                    *o = if accumulate { *o + v } else { v };
                }
            }
            for (i, o) in groups.into_remainder().iter_mut().enumerate() {
                let i = done + i;
                let v = dot(row(i), xv);
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
        let rows = rows_per_task(p, rayon::current_num_threads());
        y.par_chunks_mut(rows)
            .enumerate()
            .for_each(|(i, out)| block(i * rows, out));
    } else {
        block(0, y);
    }
    true
}

/// Lanes summed side by side: wide enough for the compiler to keep two AVX-512 (or four
/// AVX2) accumulators busy, in an order fixed by the length alone.
const LANES: usize = 32;

/// `Σ a_i b_i` over equal-length slices, in the widest vector instructions the CPU has
/// (chosen at run time: the build targets baseline x86-64, like gemm's own dispatch).
fn dot(a: &[f32], b: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU was just found to support the enabled features.
            return unsafe { dot_avx512(a, b) };
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: as above.
            return unsafe { dot_avx2(a, b) };
        }
    }
    dot_lanes(a, b)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn dot_avx512(a: &[f32], b: &[f32]) -> f32 {
    dot_lanes(a, b)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn dot_avx2(a: &[f32], b: &[f32]) -> f32 {
    dot_lanes(a, b)
}

/// The portable body of [`dot`], inlined into each feature-enabled copy.
#[inline(always)]
fn dot_lanes(a: &[f32], b: &[f32]) -> f32 {
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

/// [`dot`] of each of [`ROW_GROUP`] rows with `b`, each summed in exactly [`dot`]'s order
/// (so a row's result does not depend on its group), one pass over `b` for all of them.
fn dot_rows(rows: [&[f32]; ROW_GROUP], b: &[f32]) -> [f32; ROW_GROUP] {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU was just found to support the enabled features.
            return unsafe { dot_rows_avx512(rows, b) };
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: as above.
            return unsafe { dot_rows_avx2(rows, b) };
        }
    }
    dot_rows_lanes(rows, b)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn dot_rows_avx512(rows: [&[f32]; ROW_GROUP], b: &[f32]) -> [f32; ROW_GROUP] {
    dot_rows_lanes(rows, b)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn dot_rows_avx2(rows: [&[f32]; ROW_GROUP], b: &[f32]) -> [f32; ROW_GROUP] {
    dot_rows_lanes(rows, b)
}

/// The portable body of [`dot_rows`]: [`dot_lanes`]' accumulators, one set per row.
#[inline(always)]
fn dot_rows_lanes(rows: [&[f32]; ROW_GROUP], b: &[f32]) -> [f32; ROW_GROUP] {
    let mut acc = [[0.0f32; LANES]; ROW_GROUP];
    let full = b.len() - b.len() % LANES;
    for (c, x) in b[..full].chunks_exact(LANES).enumerate() {
        for (acc, row) in acc.iter_mut().zip(&rows) {
            let r = &row[c * LANES..][..LANES];
            for l in 0..LANES {
                acc[l] += r[l] * x[l];
            }
        }
    }
    let mut out = [0.0f32; ROW_GROUP];
    for ((o, acc), row) in out.iter_mut().zip(&acc).zip(&rows) {
        let tail: f32 = row[full..].iter().zip(&b[full..]).map(|(x, y)| x * y).sum();
        *o = acc.iter().sum::<f32>() + tail;
    }
    out
}

/// `y += alpha · x` over equal-length slices, dispatched like [`dot`].
fn axpy(y: &mut [f32], alpha: f32, x: &[f32]) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU was just found to support the enabled features.
            return unsafe { axpy_avx512(y, alpha, x) };
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: as above.
            return unsafe { axpy_avx2(y, alpha, x) };
        }
    }
    axpy_plain(y, alpha, x)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn axpy_avx512(y: &mut [f32], alpha: f32, x: &[f32]) {
    axpy_plain(y, alpha, x)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn axpy_avx2(y: &mut [f32], alpha: f32, x: &[f32]) {
    axpy_plain(y, alpha, x)
}

/// The portable body of [`axpy`].
#[inline(always)]
fn axpy_plain(y: &mut [f32], alpha: f32, x: &[f32]) {
    for (o, &v) in y.iter_mut().zip(x) {
        *o += alpha * v;
    }
}
