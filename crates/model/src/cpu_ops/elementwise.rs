//! Elementwise pieces of the step: residual adds and SwiGLU. Cost `O(n)`.

/// `dst = a + b`.
pub fn add(dst: &mut [f32], a: &[f32], b: &[f32]) {
    for ((d, &x), &y) in dst.iter_mut().zip(a).zip(b) {
        *d = x + y;
    }
}

/// `dst += src`.
pub fn add_assign(dst: &mut [f32], src: &[f32]) {
    for (d, &x) in dst.iter_mut().zip(src) {
        *d += x;
    }
}

/// `x *= a`.
pub fn scale(x: &mut [f32], a: f32) {
    for v in x.iter_mut() {
        *v *= a;
    }
}

/// `act = h1 σ(h1) h3` (SwiGLU), for when `h1` or `h3` changed after the kernel computed it.
pub fn swiglu_forward(act: &mut [f32], h1: &[f32], h3: &[f32]) {
    for ((y, &a), &b) in act.iter_mut().zip(h1).zip(h3) {
        *y = a / (1.0 + (-a).exp()) * b;
    }
}

/// Gradients of `act = h1 σ(h1) h3` given `d_act`, overwriting `dh1` and `dh3`:
/// `dh3 = d_act · h1 σ(h1)`, `dh1 = d_act · h3 · σ(h1)(1 + h1(1 − σ(h1)))`.
pub fn swiglu_backward(dh1: &mut [f32], dh3: &mut [f32], d_act: &[f32], h1: &[f32], h3: &[f32]) {
    let values = dh1
        .iter_mut()
        .zip(dh3.iter_mut())
        .zip(d_act.iter().zip(h1.iter().zip(h3)));
    for ((g1, g3), (&da, (&a, &b))) in values {
        let sig = 1.0 / (1.0 + (-a).exp());
        *g3 = da * a * sig;
        *g1 = da * b * sig * (1.0 + a * (1.0 - sig));
    }
}
