//! Next-token cross-entropy on logits `[S][V]` (one row per position), Hugging Face's
//! `logsumexp(logits) − logits[target]`. Cost `O(S·V)`, one `exp` per logit; rows run in
//! parallel, and the row losses are summed serially so the total is bit-reproducible.
//!
//! The exponentials use [`fast_exp::exp`] (vectorised, a few ulps) in a pass of their own, and
//! the row sums use [`sum_f64`]'s fixed four-lane order: S·V is 8M exps per sequence for a
//! 32000-token vocabulary, which as libm calls dominated the loss.

use anetrain_device::cpu::fast_exp;
use rayon::prelude::*;

/// The row's maximum, the input to a stable softmax.
fn row_max(row: &[f32]) -> f32 {
    row.iter().copied().fold(f32::NEG_INFINITY, f32::max)
}

/// `Σ row` in f64 over four interleaved lanes, so the loop pipelines instead of waiting on one
/// serial f64 add per element; the order is fixed, so results are reproducible.
fn sum_f64(row: &[f32]) -> f64 {
    let mut lanes = [0.0f64; 4];
    let chunks = row.chunks_exact(4);
    let tail: f64 = chunks.remainder().iter().map(|&v| v as f64).sum();
    for c in chunks {
        for (l, &v) in lanes.iter_mut().zip(c) {
            *l += v as f64;
        }
    }
    (lanes[0] + lanes[1]) + (lanes[2] + lanes[3]) + tail
}

/// The weight of position `p` (1 without weights).
fn weight(weights: Option<&[f32]>, p: usize) -> f32 {
    weights.map_or(1.0, |w| w[p])
}

/// The *sum* of the per-position losses times their weights, `Σ w·CE` (the caller divides by
/// `Σ w`); positions of weight 0 are not computed. `row_loss` holds one value per position.
pub fn loss_sum(
    logits: &[f32],
    targets: &[u32],
    weights: Option<&[f32]>,
    vocab: usize,
    row_loss: &mut [f64],
) -> f64 {
    logits
        .par_chunks_exact(vocab)
        .zip(targets)
        .zip(row_loss.par_iter_mut())
        .enumerate()
        .for_each_init(
            || vec![0.0f32; vocab],
            |exps, (p, ((row, &t), out))| {
                let w = weight(weights, p);
                if w == 0.0 {
                    *out = 0.0;
                    return;
                }
                let max = row_max(row);
                for (e, &x) in exps.iter_mut().zip(row) {
                    *e = fast_exp::exp(x - max);
                }
                // exp(x − max) ≤ 1 in f32; the sum is kept in f64 so long rows lose nothing.
                *out = w as f64 * (sum_f64(exps).ln() + (max - row[t as usize]) as f64);
            },
        );
    row_loss.iter().sum()
}

/// Replaces `logits` by `scale · w · (softmax(logits) − onehot(target))` row by row and returns
/// `Σ w·CE`. With `scale = loss_scale / Σ w` this is the scaled gradient of the weighted mean
/// loss, and a position of weight 0 gets an exact zero gradient; working in place keeps the
/// step free of a second `[S][V]` buffer.
pub fn loss_and_grad_in_place(
    logits: &mut [f32],
    targets: &[u32],
    weights: Option<&[f32]>,
    vocab: usize,
    scale: f32,
    row_loss: &mut [f64],
) -> f64 {
    logits
        .par_chunks_exact_mut(vocab)
        .zip(targets)
        .zip(row_loss.par_iter_mut())
        .enumerate()
        .for_each(|(p, ((row, &t), out))| {
            let w = weight(weights, p);
            if w == 0.0 {
                row.fill(0.0);
                *out = 0.0;
                return;
            }
            let (max, target) = (row_max(row), row[t as usize]);
            for v in row.iter_mut() {
                *v = fast_exp::exp(*v - max);
            }
            let sum = sum_f64(row);
            *out = w as f64 * (sum.ln() + (max - target) as f64);
            let g = scale * w;
            let k = (g as f64 / sum) as f32;
            for v in row.iter_mut() {
                *v *= k;
            }
            row[t as usize] -= g;
        });
    row_loss.iter().sum()
}
