//! Cross-entropy of next-token logits, averaged over every position of the batch, as
//! `transformers` computes the causal-LM loss: `mean(logsumexp(logits) − logits[target])`.
//!
//! Shapes: `logits, dlogits [n, vocab]`, `targets [n]`. Cost `O(n·vocab)`; rows run in parallel.

use rayon::prelude::*;

/// `logsumexp` of one row, computed around its maximum so `exp` cannot overflow.
fn logsumexp(row: &[f32]) -> f64 {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let sum: f64 = row.iter().map(|&x| (x as f64 - max).exp()).sum();
    max + sum.ln()
}

/// The mean loss, accumulated in f64 so the sum over many positions loses nothing.
pub fn cross_entropy_forward(logits: &[f32], targets: &[u32], vocab: usize) -> f64 {
    let total: f64 = logits
        .par_chunks_exact(vocab)
        .zip(targets)
        .map(|(row, &t)| logsumexp(row) - row[t as usize] as f64)
        .sum();
    total / targets.len() as f64
}

/// Writes the gradient of the mean loss: `dlogits = (softmax(logits) − onehot(target)) / n`.
pub fn cross_entropy_backward(dlogits: &mut [f32], logits: &[f32], targets: &[u32], vocab: usize) {
    let n = targets.len() as f64;
    dlogits
        .par_chunks_exact_mut(vocab)
        .zip(logits.par_chunks_exact(vocab))
        .zip(targets)
        .for_each(|((d_row, row), &t)| {
            let lse = logsumexp(row);
            for (j, (d, &x)) in d_row.iter_mut().zip(row).enumerate() {
                let onehot = if j == t as usize { 1.0 } else { 0.0 };
                *d = (((x as f64 - lse).exp() - onehot) / n) as f32;
            }
        });
}
