//! Cross-entropy of next-token logits, averaged over every position of the batch, as
//! `transformers` computes the causal-LM loss: `mean(logsumexp(logits) − logits[target])`.
//!
//! Shapes: `logits, dlogits [n, vocab]`, `targets [n]`. Cost `O(n·vocab)` exponentials; rows run
//! in parallel.

use rayon::prelude::*;

/// `logsumexp` of one row around its maximum, so `exp` cannot overflow. The exponentials are
/// f32 (relative error ~1e-7, far inside any tolerance we test) and their sum is f64.
fn logsumexp(row: &[f32]) -> f32 {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f64 = row.iter().map(|&x| (x - max).exp() as f64).sum();
    max + sum.ln() as f32
}

/// The mean loss, accumulated in f64 so the sum over many positions loses nothing.
pub fn cross_entropy_forward(logits: &[f32], targets: &[u32], vocab: usize) -> f64 {
    let row_losses: Vec<f64> = logits
        .par_chunks_exact(vocab)
        .zip(targets)
        .map(|(row, &t)| (logsumexp(row) - row[t as usize]) as f64)
        .collect();
    mean_in_order(&row_losses)
}

/// Sums in row order, so the loss is bit-identical whatever rayon's work splitting was.
fn mean_in_order(row_losses: &[f64]) -> f64 {
    row_losses.iter().sum::<f64>() / row_losses.len() as f64
}

/// The mean loss, as [`cross_entropy_forward`], and its gradient written to `dlogits`:
/// `(softmax(logits) − onehot(target)) / n`. One pass serves both, sharing each row's
/// `logsumexp`.
pub fn cross_entropy_forward_backward(
    dlogits: &mut [f32],
    logits: &[f32],
    targets: &[u32],
    vocab: usize,
) -> f64 {
    let inv_n = 1.0 / targets.len() as f32;
    let row_losses: Vec<f64> = dlogits
        .par_chunks_exact_mut(vocab)
        .zip(logits.par_chunks_exact(vocab))
        .zip(targets)
        .map(|((d_row, row), &t)| {
            let lse = logsumexp(row);
            for (d, &x) in d_row.iter_mut().zip(row) {
                *d = (x - lse).exp() * inv_n;
            }
            d_row[t as usize] -= inv_n;
            (lse - row[t as usize]) as f64
        })
        .collect();
    mean_in_order(&row_losses)
}
