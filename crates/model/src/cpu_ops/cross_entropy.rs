//! Next-token cross-entropy on logits `[V][S]`, Hugging Face's
//! `logsumexp(logits) − logits[target]` per position. Cost `O(S·V)`, one `exp` per logit.
//!
//! The logits are channel-major like every other activation of the step (row `v` holds token
//! `v`'s logit at every position), so the classifier `E·xf` and its weight gradient
//! `dlogits·xfᵀ` read `E [V][D]` and `dlogits` in stored order and gemm repacks neither.
//! Two passes over the `[V][S]` logits, each walking blocks of [`ROWS`] vocabulary rows in
//! parallel, vectorised across the positions: the first takes a block's maximum and its
//! exponentials while the block is in cache, the second scales them into the gradient. Each
//! block's sums are shifted by its own maximum and rescaled by `exp(block max − column max)`
//! as the blocks are added in block order, so results are bit-reproducible.
//! The exponentials use [`fast_exp::exp`] (vectorised, a few ulps): S·V is 8M exps per
//! sequence for a 32000-token vocabulary, which as libm calls dominated the loss.

use anetrain_device::cpu::fast_exp;
use rayon::prelude::*;

/// Vocabulary rows per parallel block: a fixed size (not a share of the threads), so the
/// order of the f64 sums, and hence the loss, is the same on every machine.
const ROWS: usize = 256;

/// The weight of position `p` (1 without weights).
fn weight(weights: Option<&[f32]>, p: usize) -> f32 {
    weights.map_or(1.0, |w| w[p])
}

/// One block's share of the softmax: per position, the block's maximum logit and
/// `Σ exp(x − block max)` over its rows.
struct BlockSums {
    max: Vec<f32>,
    sum: Vec<f64>,
}

impl BlockSums {
    anetrain_device::simd_versions! {
        /// The sums of `block` (whole rows of `s` positions), read twice while it is in cache:
        /// for its maximum, then for the exponentials.
        fn read(block: &[f32], s: usize) -> BlockSums {
            let max = block_max(block, s);
            let shift = shifts(&max);
            let mut sum = vec![0.0f64; s];
            for row in block.chunks_exact(s) {
                for ((a, &x), &m) in sum.iter_mut().zip(row).zip(&shift) {
                    *a += fast_exp::exp(x - m) as f64;
                }
            }
            BlockSums { max, sum }
        }
    }

    anetrain_device::simd_versions! {
        /// As [`BlockSums::read`], replacing each logit by `exp(x − block max)`.
        fn exp_in_place(block: &mut [f32], s: usize) -> BlockSums {
            let max = block_max(block, s);
            let shift = shifts(&max);
            let mut sum = vec![0.0f64; s];
            for row in block.chunks_exact_mut(s) {
                for ((a, x), &m) in sum.iter_mut().zip(row).zip(&shift) {
                    *x = fast_exp::exp(*x - m);
                    *a += *x as f64;
                }
            }
            BlockSums { max, sum }
        }
    }

    /// Per position, `exp(block max − column max)`: what brings this block's exps to the
    /// column's shift.
    fn rescale(&self, column_max: &[f32]) -> Vec<f64> {
        self.max
            .iter()
            .zip(column_max)
            .map(|(&b, &c)| {
                if b == f32::NEG_INFINITY {
                    0.0
                } else {
                    (b as f64 - c as f64).exp()
                }
            })
            .collect()
    }
}

/// Per position, the maximum logit of `block`. Always inlined into its multiversioned callers,
/// so it runs in their vectors (as a call it ran baseline SSE2: 1.5% of a stories15M step).
#[inline(always)]
fn block_max(block: &[f32], s: usize) -> Vec<f32> {
    let mut max = vec![f32::NEG_INFINITY; s];
    for row in block.chunks_exact(s) {
        for (m, &x) in max.iter_mut().zip(row) {
            *m = m.max(x);
        }
    }
    max
}

/// The shift of each position's exps: its block maximum, or 0 where every row of the block
/// is −∞ (so those exps are 0, not NaN).
fn shifts(max: &[f32]) -> Vec<f32> {
    max.iter()
        .map(|&m| if m == f32::NEG_INFINITY { 0.0 } else { m })
        .collect()
}

/// The blocks combined: per position, the column maximum and `Σ exp(x − column max)`; per
/// block and position, `exp(block max − column max)`.
struct Combined {
    max: Vec<f32>,
    sums: Vec<f64>,
    rescale: Vec<Vec<f64>>,
}

/// Combines the blocks in block order (a fixed order, so the sums are bit-reproducible).
fn combine(blocks: &[BlockSums], s: usize) -> Combined {
    let mut max = vec![f32::NEG_INFINITY; s];
    for b in blocks {
        max.iter_mut().zip(&b.max).for_each(|(a, &b)| *a = a.max(b));
    }
    let rescale: Vec<Vec<f64>> = blocks.iter().map(|b| b.rescale(&max)).collect();
    let mut sums = vec![0.0f64; s];
    for (b, r) in blocks.iter().zip(&rescale) {
        for ((a, &sum), &r) in sums.iter_mut().zip(&b.sum).zip(r) {
            *a += sum * r;
        }
    }
    Combined { max, sums, rescale }
}

anetrain_device::simd_versions! {
    /// `x ← x · k[p]` along every row of `block`, except exact zeros where `g[p]` is 0 (a
    /// zero-weight position, even where its exp was not finite).
    fn scale_rows(block: &mut [f32], k: &[f32], g: &[f32]) {
        for row in block.chunks_exact_mut(k.len()) {
            for ((x, &k), &g) in row.iter_mut().zip(k).zip(g) {
                *x = if g == 0.0 { 0.0 } else { *x * k };
            }
        }
    }
}

/// Per position, the logit of its target (read before the gradient overwrites the logits).
fn target_logits(logits: &[f32], targets: &[u32], s: usize) -> Vec<f32> {
    targets
        .iter()
        .enumerate()
        .map(|(p, &t)| logits[t as usize * s + p])
        .collect()
}

/// `w·(ln Σ exp(x − max) + max − x[target])` per position, summed in position order.
fn losses(
    sums: &[f64],
    max: &[f32],
    target: &[f32],
    weights: Option<&[f32]>,
    row_loss: &mut [f64],
) -> f64 {
    for (p, out) in row_loss.iter_mut().enumerate() {
        let w = weight(weights, p);
        *out = if w == 0.0 {
            0.0
        } else {
            w as f64 * (sums[p].ln() + (max[p] - target[p]) as f64)
        };
    }
    row_loss.iter().sum()
}

/// The *sum* of the per-position losses times their weights, `Σ w·CE` (the caller divides by
/// `Σ w`), for logits `[vocab][S]` with `S = targets.len()`; `row_loss` gets one value per
/// position (0 where the weight is 0).
pub fn loss_sum(
    logits: &[f32],
    targets: &[u32],
    weights: Option<&[f32]>,
    vocab: usize,
    row_loss: &mut [f64],
) -> f64 {
    let s = targets.len();
    debug_assert_eq!(logits.len(), vocab * s);
    let blocks: Vec<BlockSums> = logits
        .par_chunks(ROWS * s)
        .map(|block| BlockSums::read(block, s))
        .collect();
    let c = combine(&blocks, s);
    let target = target_logits(logits, targets, s);
    losses(&c.sums, &c.max, &target, weights, row_loss)
}

/// Replaces `logits [vocab][S]` by `scale · w · (softmax(logits) − onehot(target))` position
/// by position and returns `Σ w·CE`. With `scale = loss_scale / Σ w` this is the scaled
/// gradient of the weighted mean loss, and a position of weight 0 gets an exact zero
/// gradient; working in place keeps the step free of a second `[V][S]` buffer.
pub fn loss_and_grad_in_place(
    logits: &mut [f32],
    targets: &[u32],
    weights: Option<&[f32]>,
    vocab: usize,
    scale: f32,
    row_loss: &mut [f64],
) -> f64 {
    let s = targets.len();
    debug_assert_eq!(logits.len(), vocab * s);
    let target = target_logits(logits, targets, s);
    let blocks: Vec<BlockSums> = logits
        .par_chunks_mut(ROWS * s)
        .map(|block| BlockSums::exp_in_place(block, s))
        .collect();
    let c = combine(&blocks, s);
    let total = losses(&c.sums, &c.max, &target, weights, row_loss);
    // Per position: `g = scale · w` and the softmax factor `g / Σ`; weight 0 gives 0 for both.
    let g: Vec<f32> = (0..s).map(|p| scale * weight(weights, p)).collect();
    let k: Vec<f64> = g
        .iter()
        .zip(&c.sums)
        .map(|(&g, &sum)| if g == 0.0 { 0.0 } else { g as f64 / sum })
        .collect();
    logits
        .par_chunks_mut(ROWS * s)
        .zip(&c.rescale)
        .for_each(|(block, rescale)| {
            // The block's exps are shifted by its own maximum: rescaled to the column's here.
            let kb: Vec<f32> = k
                .iter()
                .zip(rescale)
                .map(|(&k, &r)| (k * r) as f32)
                .collect();
            scale_rows(block, &kb, &g);
        });
    for (p, &t) in targets.iter().enumerate() {
        logits[t as usize * s + p] -= g[p];
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;
    use anetrain_data::rng::SplitMix64;

    /// Cross-entropy of one position written out in f64: `ln Σ exp(x) − x[t]` and its gradient
    /// `scale·w·(softmax − onehot)`, over the column `p` of `[vocab][s]` logits.
    fn naive(logits: &[f32], s: usize, p: usize, t: usize, g: f64) -> (f64, Vec<f64>) {
        let col: Vec<f64> = logits
            .iter()
            .skip(p)
            .step_by(s)
            .map(|&x| x as f64)
            .collect();
        let max = col.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let sum: f64 = col.iter().map(|x| (x - max).exp()).sum();
        let loss = sum.ln() + max - col[t];
        let grad = col
            .iter()
            .enumerate()
            .map(|(v, x)| g * ((x - max).exp() / sum - if v == t { 1.0 } else { 0.0 }))
            .collect();
        (loss, grad)
    }

    #[test]
    fn loss_and_gradient_match_a_per_position_f64_loop() {
        // 700 rows: two full parallel blocks and a ragged one; a zero-weight position. Position
        // p's logits are 30 higher in block p % 3, so every block holds some column's maximum
        // and the others' exps are rescaled to it.
        let (vocab, s) = (700, 9);
        let mut rng = SplitMix64::new(3);
        let logits: Vec<f32> = (0..vocab * s)
            .map(|i| {
                let (v, p) = (i / s, i % s);
                let lift = if v / ROWS == p % 3 { 30.0 } else { 0.0 };
                (rng.unit() as f32 - 0.5) * 20.0 + lift
            })
            .collect();
        let targets: Vec<u32> = (0..s).map(|_| rng.below(vocab) as u32).collect();
        let weights: Vec<f32> = (0..s).map(|p| if p == 4 { 0.0 } else { 1.0 }).collect();
        let scale = 0.25;
        let mut rows = vec![0.0; s];
        let eval = loss_sum(&logits, &targets, Some(&weights), vocab, &mut rows);
        let mut grad = logits.clone();
        let mut rows2 = vec![0.0; s];
        let total = loss_and_grad_in_place(
            &mut grad,
            &targets,
            Some(&weights),
            vocab,
            scale,
            &mut rows2,
        );
        let mut want_total = 0.0;
        for p in 0..s {
            let w = weights[p] as f64;
            let (loss, want) = naive(&logits, s, p, targets[p] as usize, scale as f64 * w);
            want_total += w * loss;
            assert!((rows[p] - w * loss).abs() < 1e-5, "position {p}");
            assert_eq!(rows[p], rows2[p]);
            for (v, want) in want.iter().enumerate() {
                let got = grad[v * s + p] as f64;
                assert!(
                    (got - want).abs() < 1e-7,
                    "position {p}, token {v}: {got} vs {want}"
                );
            }
        }
        assert!((eval - want_total).abs() < 1e-4);
        assert_eq!(eval, total);
        assert!((0..vocab).all(|v| grad[v * s + 4] == 0.0));
    }
}
