//! Reductions (`reduce_sum`, `reduce_mean`, `reduce_max`) and `softmax`.
//!
//! Both work on a packed input seen as `[outer, r, inner]`, where `r` is the reduced run of
//! axes. With `inner == 1` each output is a reduction of one packed row; otherwise whole
//! `inner`-long rows are combined elementwise, which keeps the loops vectorisable for the
//! channel-axis reductions of the `[1, C, 1, S]` layout.

use super::fast_exp;
use super::pool::Pool;
use super::simd::fold_lanes;
use super::tensor::Tensor;
use anetrain_mil::infer::ReduceKind;
use rayon::prelude::*;

/// Output elements per rayon task when combining rows: a few cache lines per row times `r` rows.
const COLUMN_BLOCK: usize = 1024;

fn combine(kind: ReduceKind, a: f32, b: f32) -> f32 {
    match kind {
        ReduceKind::Max => a.max(b),
        ReduceKind::Sum | ReduceKind::Mean => a + b,
    }
}

/// Reduces the packed `x` of `[outer, r, inner]` into `out` of `[outer, inner]`.
/// Cost: one combine per input element, parallel over outer rows and column blocks.
fn reduce_run(x: &[f32], outer: usize, r: usize, inner: usize, kind: ReduceKind, out: &mut [f32]) {
    if r == 0 {
        let empty = if kind == ReduceKind::Max {
            f32::NEG_INFINITY
        } else {
            0.0
        };
        out.fill(empty);
        return;
    }
    if inner == 1 {
        out.par_iter_mut()
            .enumerate()
            .with_min_len(64)
            .for_each(|(o, dst)| {
                let row = &x[o * r..(o + 1) * r];
                *dst = row[1..]
                    .iter()
                    .fold(row[0], |acc, &v| combine(kind, acc, v));
            });
        return;
    }
    debug_assert_eq!(out.len(), outer * inner);
    out.par_chunks_mut(inner).enumerate().for_each(|(o, orow)| {
        orow.par_chunks_mut(COLUMN_BLOCK)
            .enumerate()
            .for_each(|(c, dst)| {
                let base = o * r * inner + c * COLUMN_BLOCK;
                dst.copy_from_slice(&x[base..base + dst.len()]);
                for ri in 1..r {
                    let src = &x[base + ri * inner..][..dst.len()];
                    for (d, &s) in dst.iter_mut().zip(src) {
                        *d = combine(kind, *d, s);
                    }
                }
            });
    });
}

/// Reduces the sorted distinct `axes` into `out_shape`, one maximal run of adjacent reduced
/// axes at a time (last run first).
pub(crate) fn reduce(
    x: &Tensor,
    kind: ReduceKind,
    axes: &[usize],
    out_shape: &[usize],
    pool: &mut Pool,
) -> Tensor {
    let mut cur = x.contiguous(pool);
    let mut shape = x.shape().to_vec();
    let mut count = 1usize;
    let mut i = axes.len();
    while i > 0 {
        let end = axes[i - 1] + 1;
        let mut start = end - 1;
        i -= 1;
        while i > 0 && axes[i - 1] + 1 == start {
            start -= 1;
            i -= 1;
        }
        let outer: usize = shape[..start].iter().product();
        let r: usize = shape[start..end].iter().product();
        let inner: usize = shape[end..].iter().product();
        count *= r;
        let mut out = pool.take_for_write(outer * inner);
        let src = cur.as_contiguous().unwrap_or_default();
        reduce_run(src, outer, r, inner, kind, &mut out);
        shape[start..end].iter_mut().for_each(|n| *n = 1);
        let prev = std::mem::replace(&mut cur, Tensor::new(shape.clone(), out));
        if let Some(buf) = prev.into_storage() {
            pool.put(buf);
        }
    }
    let mut data = match cur.into_storage() {
        Some(buf) => buf,
        None => {
            let mut buf = pool.take_for_write(shape.iter().product());
            x.copy_to(&mut buf);
            buf
        }
    };
    if kind == ReduceKind::Mean && count > 0 {
        let scale = 1.0 / count as f32;
        data.iter_mut().for_each(|v| *v *= scale);
    }
    Tensor::new(out_shape.to_vec(), data)
}

/// Accumulators of the softmax row's max and sum: one AVX register of f32, two NEON registers.
const LANES: usize = 8;

crate::simd_versions! {
    /// Softmax of one packed row: the max and the sum in [`LANES`] lanes ([`fold_lanes`]),
    /// the exponentials in a pass
    /// of their own (fused with the sum, the sum's dependency chain stalls the exp loop;
    /// measured 1.55× slower on AVX-512 for attention rows), in the widest vectors the CPU has
    /// ([`simd_versions`](crate::simd_versions)).
    fn softmax_row(dst: &mut [f32], row: &[f32]) {
        let m = fold_lanes::<LANES, _>(row, f32::NEG_INFINITY, f32::max, f32::max);
        for (d, &v) in dst.iter_mut().zip(row) {
            *d = fast_exp::exp(v - m);
        }
        let inv = 1.0 / fold_lanes::<LANES, _>(dst, 0.0, |a, v| a + v, |a, v| a + v);
        dst.iter_mut().for_each(|d| *d *= inv);
    }
}

/// Numerically stable softmax along `axis`: `exp(x - max) / Σ exp(x - max)`.
/// Cost: four passes over the input (max, exp, sum, scale), parallel over rows/blocks.
pub(crate) fn softmax(x: &Tensor, axis: usize, pool: &mut Pool) -> Tensor {
    let packed = x.contiguous(pool);
    let shape = x.shape();
    let outer: usize = shape[..axis].iter().product();
    let r = shape[axis];
    let inner: usize = shape[axis + 1..].iter().product();
    let mut out = pool.take_for_write(x.numel());
    let src = packed.as_contiguous().unwrap_or_default();
    softmax_into(src, outer, r, inner, &mut out);
    Tensor::new(shape.to_vec(), out)
}

/// Softmax of packed `[outer, r, inner]` over `r`, written to `out`.
pub(crate) fn softmax_into(x: &[f32], outer: usize, r: usize, inner: usize, out: &mut [f32]) {
    if r == 0 || outer * inner == 0 {
        return;
    }
    if inner == 1 {
        out.par_chunks_mut(r)
            .zip(x.par_chunks(r))
            .with_min_len(8)
            .for_each(|(dst, row)| softmax_row(dst, row));
        return;
    }
    // Column statistics first (max, then Σ exp), each parallel over column blocks, then every
    // row is written in parallel; exp is evaluated twice per element to keep writes disjoint.
    let mut max = vec![f32::NEG_INFINITY; inner];
    let mut sum = vec![0.0f32; inner];
    for (xb, ob) in x.chunks(r * inner).zip(out.chunks_mut(r * inner)) {
        max.par_chunks_mut(COLUMN_BLOCK)
            .enumerate()
            .for_each(|(c, m)| {
                m.fill(f32::NEG_INFINITY);
                for row in xb.chunks(inner) {
                    for (m, &v) in m.iter_mut().zip(&row[c * COLUMN_BLOCK..]) {
                        *m = m.max(v);
                    }
                }
            });
        sum.par_chunks_mut(COLUMN_BLOCK)
            .enumerate()
            .for_each(|(c, s)| {
                s.fill(0.0);
                let m = &max[c * COLUMN_BLOCK..];
                for row in xb.chunks(inner) {
                    for ((s, &v), &m) in s.iter_mut().zip(&row[c * COLUMN_BLOCK..]).zip(m) {
                        *s += fast_exp::exp(v - m);
                    }
                }
            });
        ob.par_chunks_mut(inner)
            .zip(xb.par_chunks(inner))
            .for_each(|(dst, row)| {
                for (((d, &v), &m), &s) in dst.iter_mut().zip(row).zip(&max).zip(&sum) {
                    *d = fast_exp::exp(v - m) / s;
                }
            });
    }
}
