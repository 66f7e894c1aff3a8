//! RMSNorm over channel groups of a `[C][S]` block: `y = w ⊙ x / sqrt(mean(x²) + eps)` per
//! column, eps inside the root (Hugging Face's `LlamaRMSNorm`).
//!
//! With `d = w.len()`, the `C` channels split into `C / d` groups of `d` channels, each
//! normalised separately at every position: one group for the layer norms (`d = dim`), one
//! group per head for Qwen3's `q_norm`/`k_norm` (`d = head_dim`). Per-(group, position)
//! statistics are `[groups][S]`. Loops run over positions innermost, so they vectorise.
//! Cost `O(C·S)` each way.

use anetrain_device::cpu::PAR_MIN;
use rayon::prelude::*;

/// Positions per rayon task of the per-position statistics: a few cache lines of every row.
const POSITIONS_PER_TASK: usize = 64;

/// Runs `stats(out, group, t0)` for every group and every run of positions of `out`
/// (`[groups][S]`, `t0` the run's first position), in parallel when `par`.
fn per_position<T: Sync>(
    out: &mut [f32],
    groups: &[T],
    s: usize,
    par: bool,
    stats: impl Fn(&mut [f32], &T, usize) + Sync,
) {
    if !par {
        for (o, g) in out.chunks_exact_mut(s).zip(groups) {
            stats(o, g, 0);
        }
        return;
    }
    out.par_chunks_exact_mut(s).zip(groups).for_each(|(o, g)| {
        o.par_chunks_mut(POSITIONS_PER_TASK)
            .enumerate()
            .for_each(|(k, run)| stats(run, g, k * POSITIONS_PER_TASK));
    });
}

/// Normalises `x [C][S]` into `y` and writes `inv_rms [C/d][S] = 1/sqrt(mean(x²) + eps)`.
/// Large blocks are split over rayon's threads by positions, then by channels; every value
/// is summed in the same order either way, so the result does not depend on the split.
pub fn rmsnorm_forward(
    y: &mut [f32],
    inv_rms: &mut [f32],
    x: &[f32],
    w: &[f32],
    s: usize,
    eps: f32,
) {
    let d = w.len();
    let par = x.len() >= PAR_MIN;
    let groups: Vec<&[f32]> = x.chunks_exact(d * s).collect();
    per_position(inv_rms, &groups, s, par, |r, x_g, t0| {
        r.fill(0.0);
        for x_c in x_g.chunks_exact(s) {
            for (acc, &v) in r.iter_mut().zip(&x_c[t0..]) {
                *acc += v * v;
            }
        }
        for acc in r.iter_mut() {
            *acc = 1.0 / (*acc / d as f32 + eps).sqrt();
        }
    });
    let inv_rms = &*inv_rms;
    let row = |c: usize, y_c: &mut [f32], x_c: &[f32]| {
        let (r, w_c) = (&inv_rms[c / d * s..][..s], w[c % d]);
        for ((yv, &xv), &rv) in y_c.iter_mut().zip(x_c).zip(r) {
            *yv = w_c * xv * rv;
        }
    };
    if par {
        y.par_chunks_exact_mut(s)
            .zip(x.par_chunks_exact(s))
            .enumerate()
            .for_each(|(c, (y_c, x_c))| row(c, y_c, x_c));
    } else {
        for (c, (y_c, x_c)) in y.chunks_exact_mut(s).zip(x.chunks_exact(s)).enumerate() {
            row(c, y_c, x_c);
        }
    }
}

/// Adds the input gradient to `dx [C][S]` and the weight gradient to `dw [d]`, given the
/// output gradient `dy`, the input `x`, the weight `w` and the saved `inv_rms`.
/// With `r = inv_rms`, `g = w ⊙ dy`: `dx += r g − r³ x (g·x)/d`, `dw += Σ dy ⊙ x r`.
/// `scratch` holds `[C/d][S]` values (the per-column `g·x`). Split over threads like
/// [`rmsnorm_forward`]; each `dw` element still adds its channels' sums in channel order.
#[allow(clippy::too_many_arguments)]
pub fn rmsnorm_backward(
    dx: &mut [f32],
    dw: &mut [f32],
    dy: &[f32],
    x: &[f32],
    w: &[f32],
    inv_rms: &[f32],
    s: usize,
    scratch: &mut [f32],
) {
    let d = w.len();
    let par = x.len() >= PAR_MIN;
    let groups: Vec<(&[f32], &[f32], &[f32])> = dy
        .chunks_exact(d * s)
        .zip(x.chunks_exact(d * s))
        .zip(inv_rms.chunks_exact(s))
        .map(|((dy_g, x_g), r)| (dy_g, x_g, r))
        .collect();
    per_position(scratch, &groups, s, par, |coef, &(dy_g, x_g, r), t0| {
        coef.fill(0.0);
        for ((dy_c, x_c), &w_c) in dy_g.chunks_exact(s).zip(x_g.chunks_exact(s)).zip(w) {
            for ((acc, &g), &xv) in coef.iter_mut().zip(&dy_c[t0..]).zip(&x_c[t0..]) {
                *acc += w_c * g * xv;
            }
        }
        for (acc, &rv) in coef.iter_mut().zip(&r[t0..]) {
            *acc *= rv * rv * rv / d as f32;
        }
    });
    let coefs = &*scratch;
    // The row's `dx` update; returns its share of `dw[c % d]`.
    let row = |c: usize, dx_c: &mut [f32], dy_c: &[f32], x_c: &[f32]| -> f32 {
        let g = c / d;
        let (r, coef, w_c) = (&inv_rms[g * s..][..s], &coefs[g * s..][..s], w[c % d]);
        let mut dw_acc = 0.0;
        for t in 0..s {
            dx_c[t] += r[t] * w_c * dy_c[t] - coef[t] * x_c[t];
            dw_acc += dy_c[t] * x_c[t] * r[t];
        }
        dw_acc
    };
    let rows = groups.len() * d;
    if par {
        let shares: Vec<f32> = dx
            .par_chunks_exact_mut(s)
            .zip(dy.par_chunks_exact(s).zip(x.par_chunks_exact(s)))
            .take(rows)
            .enumerate()
            .map(|(c, (dx_c, (dy_c, x_c)))| row(c, dx_c, dy_c, x_c))
            .collect();
        for (c, share) in shares.into_iter().enumerate() {
            dw[c % d] += share;
        }
    } else {
        let channels = dx
            .chunks_exact_mut(s)
            .zip(dy.chunks_exact(s).zip(x.chunks_exact(s)))
            .take(rows);
        for (c, (dx_c, (dy_c, x_c))) in channels.enumerate() {
            dw[c % d] += row(c, dx_c, dy_c, x_c);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reference::norm as token_major;

    /// `[rows][cols]` → `[cols][rows]`.
    fn transpose(x: &[f32], rows: usize, cols: usize) -> Vec<f32> {
        (0..rows * cols)
            .map(|i| x[(i % rows) * cols + i / rows])
            .collect()
    }

    #[test]
    fn per_head_groups_match_the_token_major_reference() {
        check_against_reference(3, 8, 5);
    }

    /// Large enough to take the multi-threaded path, with a last run of positions shorter
    /// than the others.
    #[test]
    fn threaded_blocks_match_the_token_major_reference() {
        for heads in [1, 4] {
            check_against_reference(heads, 128, 300);
        }
        const { assert!(4 * 128 * 300 >= PAR_MIN && 300 % POSITIONS_PER_TASK != 0) };
    }

    fn check_against_reference(heads: usize, d: usize, s: usize) {
        let x: Vec<f32> = (0..heads * d * s)
            .map(|i| (i as f32 * 0.37).sin())
            .collect();
        let w: Vec<f32> = (0..d).map(|i| 1.0 + 0.1 * i as f32).collect();
        let dy: Vec<f32> = (0..heads * d * s)
            .map(|i| (i as f32 * 0.91).cos())
            .collect();
        // Reference rows are (position, head) head vectors of the token-major [S][heads·d].
        let (x_tm, dy_tm) = (transpose(&x, heads * d, s), transpose(&dy, heads * d, s));
        let mut y_tm = vec![0.0; x.len()];
        let inv_tm = token_major::rmsnorm_forward(&mut y_tm, &x_tm, &w, 1e-5);
        let (mut dx_tm, mut dw_tm) = (vec![0.0; x.len()], vec![0.0; d]);
        token_major::rmsnorm_backward(&mut dx_tm, &mut dw_tm, &dy_tm, &x_tm, &w, &inv_tm);

        let (mut y, mut inv) = (vec![0.0; x.len()], vec![0.0; heads * s]);
        rmsnorm_forward(&mut y, &mut inv, &x, &w, s, 1e-5);
        let (mut dx, mut dw, mut scratch) =
            (vec![0.0; x.len()], vec![0.0; d], vec![0.0; heads * s]);
        rmsnorm_backward(&mut dx, &mut dw, &dy, &x, &w, &inv, s, &mut scratch);
        let close = |a: &[f32], b: &[f32]| {
            a.iter()
                .zip(b)
                .all(|(p, q)| (p - q).abs() < 1e-5 * (1.0 + q.abs()))
        };
        assert!(close(&y, &transpose(&y_tm, s, heads * d)));
        assert!(close(&dx, &transpose(&dx_tm, s, heads * d)));
        assert!(close(&dw, &dw_tm));
    }
}
