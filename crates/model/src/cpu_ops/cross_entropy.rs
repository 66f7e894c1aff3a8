//! Next-token cross-entropy on logits `[S][V]` (one row per position), Hugging Face's
//! `logsumexp(logits) − logits[target]`. Cost `O(S·V)`; rows run in parallel, and the row
//! losses are summed serially so the total is bit-reproducible.

use rayon::prelude::*;

/// `logsumexp` of one row around its maximum, in f64 so long rows lose nothing.
fn logsumexp(row: &[f32]) -> f64 {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let sum: f64 = row.iter().map(|&x| (x as f64 - max).exp()).sum();
    max + sum.ln()
}

/// The *sum* of the per-position losses (the caller divides by the batch's token count).
/// `row_loss` holds one value per position.
pub fn loss_sum(logits: &[f32], targets: &[u32], vocab: usize, row_loss: &mut [f64]) -> f64 {
    logits
        .par_chunks_exact(vocab)
        .zip(targets)
        .zip(row_loss.par_iter_mut())
        .for_each(|((row, &t), out)| *out = logsumexp(row) - row[t as usize] as f64);
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
            let lse = logsumexp(row);
            *out = lse - row[t as usize] as f64;
            for v in row.iter_mut() {
                *v = ((*v as f64 - lse).exp() * scale as f64) as f32;
            }
            row[t as usize] -= scale;
        });
    row_loss.iter().sum()
}
