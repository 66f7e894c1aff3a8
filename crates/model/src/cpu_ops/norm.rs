//! RMSNorm over channel groups of a `[C][S]` block: `y = w ⊙ x / sqrt(mean(x²) + eps)` per
//! column, eps inside the root (Hugging Face's `LlamaRMSNorm`).
//!
//! With `d = w.len()`, the `C` channels split into `C / d` groups of `d` channels, each
//! normalised separately at every position: one group for the layer norms (`d = dim`), one
//! group per head for Qwen3's `q_norm`/`k_norm` (`d = head_dim`). Per-(group, position)
//! statistics are `[groups][S]`. Loops run over positions innermost, so they vectorise.
//! Cost `O(C·S)` each way.

/// Normalises `x [C][S]` into `y` and writes `inv_rms [C/d][S] = 1/sqrt(mean(x²) + eps)`.
pub fn rmsnorm_forward(
    y: &mut [f32],
    inv_rms: &mut [f32],
    x: &[f32],
    w: &[f32],
    s: usize,
    eps: f32,
) {
    let d = w.len();
    for ((y_g, x_g), r) in y
        .chunks_exact_mut(d * s)
        .zip(x.chunks_exact(d * s))
        .zip(inv_rms.chunks_exact_mut(s))
    {
        r.fill(0.0);
        for x_c in x_g.chunks_exact(s) {
            for (acc, &v) in r.iter_mut().zip(x_c) {
                *acc += v * v;
            }
        }
        for acc in r.iter_mut() {
            *acc = 1.0 / (*acc / d as f32 + eps).sqrt();
        }
        for ((y_c, x_c), &w_c) in y_g.chunks_exact_mut(s).zip(x_g.chunks_exact(s)).zip(w) {
            for ((yv, &xv), &rv) in y_c.iter_mut().zip(x_c).zip(r.iter()) {
                *yv = w_c * xv * rv;
            }
        }
    }
}

/// Adds the input gradient to `dx [C][S]` and the weight gradient to `dw [d]`, given the
/// output gradient `dy`, the input `x`, the weight `w` and the saved `inv_rms`.
/// With `r = inv_rms`, `g = w ⊙ dy`: `dx += r g − r³ x (g·x)/d`, `dw += Σ dy ⊙ x r`.
/// `scratch` holds `[C/d][S]` values (the per-column `g·x`).
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
    let groups = dy
        .chunks_exact(d * s)
        .zip(x.chunks_exact(d * s))
        .zip(dx.chunks_exact_mut(d * s))
        .zip(inv_rms.chunks_exact(s).zip(scratch.chunks_exact_mut(s)));
    for (((dy_g, x_g), dx_g), (r, coef)) in groups {
        coef.fill(0.0);
        for ((dy_c, x_c), &w_c) in dy_g.chunks_exact(s).zip(x_g.chunks_exact(s)).zip(w) {
            for ((acc, &g), &xv) in coef.iter_mut().zip(dy_c).zip(x_c) {
                *acc += w_c * g * xv;
            }
        }
        for (acc, &rv) in coef.iter_mut().zip(r) {
            *acc *= rv * rv * rv / d as f32;
        }
        let channels = dy_g
            .chunks_exact(s)
            .zip(x_g.chunks_exact(s))
            .zip(dx_g.chunks_exact_mut(s));
        for (((dy_c, x_c), dx_c), (&w_c, dw_c)) in channels.zip(w.iter().zip(dw.iter_mut())) {
            let mut dw_acc = 0.0;
            for t in 0..s {
                dx_c[t] += r[t] * w_c * dy_c[t] - coef[t] * x_c[t];
                dw_acc += dy_c[t] * x_c[t] * r[t];
            }
            *dw_c += dw_acc;
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
        let (heads, d, s) = (3, 8, 5);
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
        let close = |a: &[f32], b: &[f32]| a.iter().zip(b).all(|(p, q)| (p - q).abs() < 1e-5);
        assert!(close(&y, &transpose(&y_tm, s, heads * d)));
        assert!(close(&dx, &transpose(&dx_tm, s, heads * d)));
        assert!(close(&dw, &dw_tm));
    }
}
