//! Elementwise pieces of the step: residual adds and SwiGLU. Cost `O(n)`, spread over rayon's
//! threads for large tensors: the pool would otherwise idle while the main thread loops
//! (each element is computed alone, so the results do not depend on the split).

use anetrain_device::cpu::{PAR_GRAIN, PAR_MIN};
use rayon::prelude::*;

/// Runs `f` on matching pieces of `dst` and `src`, in parallel when `dst` is long enough to
/// pay for a fork/join.
fn chunked<const N: usize>(
    dst: &mut [f32],
    src: [&[f32]; N],
    f: impl Fn(&mut [f32], [&[f32]; N]) + Sync,
) {
    if dst.len() < PAR_MIN {
        return f(dst, src);
    }
    dst.par_chunks_mut(PAR_GRAIN)
        .enumerate()
        .for_each(|(i, d)| f(d, src.map(|s| &s[i * PAR_GRAIN..][..d.len()])));
}

/// `dst = a + b`.
pub fn add(dst: &mut [f32], a: &[f32], b: &[f32]) {
    chunked(dst, [a, b], |dst, [a, b]| {
        for ((d, &x), &y) in dst.iter_mut().zip(a).zip(b) {
            *d = x + y;
        }
    });
}

/// `dst += src`.
pub fn add_assign(dst: &mut [f32], src: &[f32]) {
    chunked(dst, [src], |dst, [src]| {
        for (d, &x) in dst.iter_mut().zip(src) {
            *d += x;
        }
    });
}

/// `x *= a`.
pub fn scale(x: &mut [f32], a: f32) {
    chunked(x, [], |x, []| {
        for v in x.iter_mut() {
            *v *= a;
        }
    });
}

/// `act = h1 σ(h1) h3` (SwiGLU), for when `h1` or `h3` changed after the kernel computed it.
pub fn swiglu_forward(act: &mut [f32], h1: &[f32], h3: &[f32]) {
    chunked(act, [h1, h3], |act, [h1, h3]| {
        for ((y, &a), &b) in act.iter_mut().zip(h1).zip(h3) {
            *y = a / (1.0 + (-a).exp()) * b;
        }
    });
}

/// Gradients of `act = h1 σ(h1) h3` given `d_act`, overwriting `dh1` and `dh3`:
/// `dh3 = d_act · h1 σ(h1)`, `dh1 = d_act · h3 · σ(h1)(1 + h1(1 − σ(h1)))`.
pub fn swiglu_backward(dh1: &mut [f32], dh3: &mut [f32], d_act: &[f32], h1: &[f32], h3: &[f32]) {
    let piece = |dh1: &mut [f32], dh3: &mut [f32], [d_act, h1, h3]: [&[f32]; 3]| {
        let values = dh1
            .iter_mut()
            .zip(dh3.iter_mut())
            .zip(d_act.iter().zip(h1.iter().zip(h3)));
        for ((g1, g3), (&da, (&a, &b))) in values {
            let sig = 1.0 / (1.0 + (-a).exp());
            *g3 = da * a * sig;
            *g1 = da * b * sig * (1.0 + a * (1.0 - sig));
        }
    };
    if dh1.len() < PAR_MIN {
        return piece(dh1, dh3, [d_act, h1, h3]);
    }
    dh1.par_chunks_mut(PAR_GRAIN)
        .zip(dh3.par_chunks_mut(PAR_GRAIN))
        .enumerate()
        .for_each(|(i, (g1, g3))| {
            let r = i * PAR_GRAIN..i * PAR_GRAIN + g1.len();
            piece(g1, g3, [&d_act[r.clone()], &h1[r.clone()], &h3[r]]);
        });
}
