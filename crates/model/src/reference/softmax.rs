//! Softmax over one vector, and its backward. Attention applies it to the causal prefix of each
//! score row. Cost `O(len)`.

/// `x ← exp(x - max x) / Σ exp(x - max x)`, in place. Subtracting the maximum keeps `exp` finite.
pub fn softmax_forward(x: &mut [f32]) {
    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0;
    for v in x.iter_mut() {
        *v = (*v - max).exp();
        sum += *v;
    }
    for v in x.iter_mut() {
        *v /= sum;
    }
}

/// Adds the input gradient of a softmax with output `y` and output gradient `dy` to `dx`:
/// `dx_i += y_i (dy_i - Σ_j y_j dy_j)`.
pub fn softmax_backward(dx: &mut [f32], y: &[f32], dy: &[f32]) {
    let dot: f32 = y.iter().zip(dy).map(|(a, b)| a * b).sum();
    for ((dxi, yi), dyi) in dx.iter_mut().zip(y).zip(dy) {
        *dxi += yi * (dyi - dot);
    }
}
