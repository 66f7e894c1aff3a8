//! The SwiGLU gate of the MLP: `act = silu(gate) ⊙ up`, with `silu(g) = g σ(g)`.
//!
//! Shapes: `gate, up, act [n, hidden_dim]`, elementwise. Cost `O(n·hidden_dim)`.

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// `act = silu(gate) ⊙ up`, overwriting `act`.
pub fn swiglu_forward(act: &mut [f32], gate: &[f32], up: &[f32]) {
    for ((a, &g), &u) in act.iter_mut().zip(gate).zip(up) {
        *a = g * sigmoid(g) * u;
    }
}

/// Adds the gradients of [`swiglu_forward`] to `dgate` and `dup`, given `dact`:
/// `dup = dact ⊙ silu(gate)`, `dgate = dact ⊙ up ⊙ σ(g)(1 + g(1 − σ(g)))`.
pub fn swiglu_backward(dgate: &mut [f32], dup: &mut [f32], dact: &[f32], gate: &[f32], up: &[f32]) {
    for i in 0..dact.len() {
        let (g, u, da) = (gate[i], up[i], dact[i]);
        let s = sigmoid(g);
        dup[i] += da * g * s;
        dgate[i] += da * u * s * (1.0 + g * (1.0 - s));
    }
}
