//! Next-token cross-entropy on logits `[S][V]` (one row per position), Hugging Face's
//! `logsumexp(logits) − logits[target]`. Cost `O(S·V)`, one `exp` per logit; rows run in
//! parallel, and the row losses are summed serially so the total is bit-reproducible.

use rayon::prelude::*;

/// The row's maximum, the input to a stable softmax.
fn row_max(row: &[f32]) -> f32 {
    row.iter().copied().fold(f32::NEG_INFINITY, f32::max)
}

/// The *sum* of the per-position losses (the caller divides by the batch's token count).
/// `row_loss` holds one value per position.
pub fn loss_sum(logits: &[f32], targets: &[u32], vocab: usize, row_loss: &mut [f64]) -> f64 {
    logits
        .par_chunks_exact(vocab)
        .zip(targets)
        .zip(row_loss.par_iter_mut())
        .for_each(|((row, &t), out)| {
            let max = row_max(row);
            // exp(x − max) ≤ 1 in f32; the sum is kept in f64 so long rows lose nothing.
            let sum: f64 = row.iter().map(|&x| (x - max).exp() as f64).sum();
            *out = sum.ln() + (max - row[t as usize]) as f64;
        });
    row_loss.iter().sum()
}

/// Replaces `logits` by `scale · (softmax(logits) − onehot(target))` row by row and returns
/// the summed loss. With `scale = loss_scale / tokens` this is the scaled gradient of the mean
/// loss; working in place keeps the step free of a second `[S][V]` buffer.
pub fn loss_and_grad_in_place(
    logits: &mut [f32],
    targets: &[u32],
    vocab: usize,
    scale: f32,
    row_loss: &mut [f64],
) -> f64 {
    logits
        .par_chunks_exact_mut(vocab)
        .zip(targets)
        .zip(row_loss.par_iter_mut())
        .for_each(|((row, &t), out)| {
            let (max, target) = (row_max(row), row[t as usize]);
            let mut sum = 0.0f64;
            for v in row.iter_mut() {
                *v = (*v - max).exp();
                sum += *v as f64;
            }
            *out = sum.ln() + (max - target) as f64;
            let k = (scale as f64 / sum) as f32;
            for v in row.iter_mut() {
                *v *= k;
            }
            row[t as usize] -= scale;
        });
    row_loss.iter().sum()
}
