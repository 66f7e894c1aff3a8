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
