//! RMSNorm as Hugging Face's `LlamaRMSNorm` / `Qwen3RMSNorm` defines it:
//! `y = w ⊙ x / sqrt(mean(x²) + eps)`, eps inside the square root, applied to each row.
//!
//! Shapes: `x, y [rows, d]`, `w [d]`. Used over the model width (layer norms) and over
//! `head_dim` (Qwen3 `q_norm`/`k_norm`, where each head vector is a row). Cost `O(rows·d)`.

/// Normalises each row of `x` into `y` and returns `1/sqrt(mean(x²) + eps)` per row, which the
/// backward pass needs.
pub fn rmsnorm_forward(y: &mut [f32], x: &[f32], w: &[f32], eps: f32) -> Vec<f32> {
    let d = w.len();
    let mut inv_rms = Vec::with_capacity(x.len() / d);
    for (y_row, x_row) in y.chunks_exact_mut(d).zip(x.chunks_exact(d)) {
        let mean_sq = x_row.iter().map(|v| v * v).sum::<f32>() / d as f32;
        let r = 1.0 / (mean_sq + eps).sqrt();
        for ((yi, xi), wi) in y_row.iter_mut().zip(x_row).zip(w) {
            *yi = wi * xi * r;
        }
        inv_rms.push(r);
    }
    inv_rms
}

/// Adds the gradients of [`rmsnorm_forward`] to `dx [rows, d]` and `dw [d]`, given the output
/// gradient `dy`, the input `x`, the weight `w` and the saved `inv_rms`.
///
/// With `r = inv_rms` and `g = w ⊙ dy`: `dx = r g - r³ x (g·x) / d` and `dw = Σ_rows dy ⊙ x r`.
pub fn rmsnorm_backward(
    dx: &mut [f32],
    dw: &mut [f32],
    dy: &[f32],
    x: &[f32],
    w: &[f32],
    inv_rms: &[f32],
) {
    let d = w.len();
    let rows = dx
        .chunks_exact_mut(d)
        .zip(dy.chunks_exact(d))
        .zip(x.chunks_exact(d));
    for (((dx_row, dy_row), x_row), &r) in rows.zip(inv_rms) {
        let g_dot_x: f32 = (0..d).map(|i| w[i] * dy_row[i] * x_row[i]).sum();
        let coef = r * r * r * g_dot_x / d as f32;
        for i in 0..d {
            dx_row[i] += r * w[i] * dy_row[i] - coef * x_row[i];
            dw[i] += dy_row[i] * x_row[i] * r;
        }
    }
}
