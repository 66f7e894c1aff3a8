//! Cross-entropy of next-token logits, as `transformers` computes the causal-LM loss with
//! ignored labels: the weighted mean `Σ w·(logsumexp(logits) − logits[target]) / Σ w` over every
//! position of the batch, `w` the position's target weight (`None`: every weight is 1). A batch
//! whose weights are all 0 has loss 0 and no gradient.
//!
//! Shapes: `logits, dlogits [n, vocab]`, `targets, weights [n]`. Cost `O(n·vocab)`
//! exponentials; rows run in parallel.

use rayon::prelude::*;

/// `logsumexp` of one row around its maximum, so `exp` cannot overflow. The exponentials are
/// f32 (relative error ~1e-7, far inside any tolerance we test) and their sum is f64.
fn logsumexp(row: &[f32]) -> f32 {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f64 = row.iter().map(|&x| (x - max).exp() as f64).sum();
    max + sum.ln() as f32
}

/// The weight of position `i`.
fn weight(weights: Option<&[f32]>, i: usize) -> f32 {
    weights.map_or(1.0, |w| w[i])
}

/// `Σ w`, the mean's denominator.
fn weight_sum(weights: Option<&[f32]>, n: usize) -> f64 {
    weights.map_or(n as f64, |w| w.iter().map(|&x| x as f64).sum())
}

/// The weighted mean loss, accumulated in f64 so the sum over many positions loses nothing.
pub fn cross_entropy_forward(
    logits: &[f32],
    targets: &[u32],
    weights: Option<&[f32]>,
    vocab: usize,
) -> f64 {
    let row_losses: Vec<f64> = logits
        .par_chunks_exact(vocab)
        .zip(targets)
        .enumerate()
        .map(|(i, (row, &t))| weight(weights, i) as f64 * (logsumexp(row) - row[t as usize]) as f64)
        .collect();
    mean_in_order(&row_losses, weight_sum(weights, targets.len()))
}

/// Sums in row order, so the loss is bit-identical whatever rayon's work splitting was.
fn mean_in_order(row_losses: &[f64], total_weight: f64) -> f64 {
    if total_weight == 0.0 {
        return 0.0;
    }
    row_losses.iter().sum::<f64>() / total_weight
}

/// The weighted mean loss, as [`cross_entropy_forward`], and its gradient written to
/// `dlogits`: `w·(softmax(logits) − onehot(target)) / Σ w`. One pass serves both, sharing each
/// row's `logsumexp`.
pub fn cross_entropy_forward_backward(
    dlogits: &mut [f32],
    logits: &[f32],
    targets: &[u32],
    weights: Option<&[f32]>,
    vocab: usize,
) -> f64 {
    let total = weight_sum(weights, targets.len());
    let inv_total = if total == 0.0 {
        0.0
    } else {
        (1.0 / total) as f32
    };
    let row_losses: Vec<f64> = dlogits
        .par_chunks_exact_mut(vocab)
        .zip(logits.par_chunks_exact(vocab))
        .zip(targets)
        .enumerate()
        .map(|(i, ((d_row, row), &t))| {
            let w = weight(weights, i);
            let k = w * inv_total;
            let lse = logsumexp(row);
            for (d, &x) in d_row.iter_mut().zip(row) {
                *d = (x - lse).exp() * k;
            }
            d_row[t as usize] -= k;
            w as f64 * (lse - row[t as usize]) as f64
        })
        .collect();
    mean_in_order(&row_losses, total)
}
