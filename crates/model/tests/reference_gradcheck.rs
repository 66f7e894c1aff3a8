//! The reference transformer's hand-written backward pass agrees with finite differences of its
//! own forward pass: block by block (RMSNorm, RoPE, softmax, SwiGLU, attention, cross-entropy)
//! and for the whole loss on tiny MHA-untied, GQA-tied and Qwen3 QK-norm models.
//!
//! Precision: the reference is f32. Central differences `(L(x+h) − L(x−h)) / 2h` then carry two
//! errors: rounding, about `ε_f32 · |L| / h` (`6e-8 · 3 / 1e-2 ≈ 2e-5` for the whole model, whose
//! loss is near ln(vocab) ≈ 3 and is summed in f64), and truncation, `O(h²)` relative. The
//! tolerances below are a few times that floor, measured against the scale of each tensor's
//! gradient; a wrong term in a backward formula shows up as an error of order 1 relative.

use anetrain_model::config::{Family, ModelConfig};
use anetrain_model::params::Params;
use anetrain_model::reference::attention::{attention_backward, attention_forward};
use anetrain_model::reference::cross_entropy::{
    cross_entropy_forward, cross_entropy_forward_backward,
};
use anetrain_model::reference::loss_and_grads;
use anetrain_model::reference::norm::{rmsnorm_backward, rmsnorm_forward};
use anetrain_model::reference::rope::RopeTable;
use anetrain_model::reference::softmax::{softmax_backward, softmax_forward};
use anetrain_model::reference::swiglu::{swiglu_backward, swiglu_forward};

/// Largest accepted `|fd − analytic| / max|analytic|`: the measured worst case is about 3e-4
/// (f32 rounding, see above); a wrong backward formula gives errors near 1.
const TOLERANCE: f64 = 2e-3;

/// A tiny deterministic generator for test data (64-bit LCG, top bits).
struct Lcg(u64);

impl Lcg {
    fn next_f32(&mut self) -> f32 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
    fn vec(&mut self, n: usize, scale: f32) -> Vec<f32> {
        (0..n).map(|_| scale * self.next_f32()).collect()
    }
    fn below(&mut self, n: usize) -> usize {
        ((self.next_f32() + 1.0) * 0.5 * n as f32) as usize % n
    }
}

fn dot64(a: &[f32], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum()
}

/// Central difference of `f` in every coordinate of `x`, compared with `analytic`;
/// returns the worst `|fd − analytic| / max|analytic|`.
fn worst_fd_error(x: &[f32], analytic: &[f32], h: f32, f: impl Fn(&[f32]) -> f64) -> f64 {
    let scale = analytic.iter().fold(0.0f64, |m, g| m.max(g.abs() as f64));
    assert!(
        scale > 1e-6,
        "gradient is identically ~0; the check would be vacuous"
    );
    let mut xs = x.to_vec();
    let mut worst = 0.0f64;
    for i in 0..x.len() {
        xs[i] = x[i] + h;
        let (up, xp) = (f(&xs), xs[i]);
        xs[i] = x[i] - h;
        let (down, xm) = (f(&xs), xs[i]);
        xs[i] = x[i];
        let fd = (up - down) / (xp - xm) as f64;
        worst = worst.max((fd - analytic[i] as f64).abs() / scale);
    }
    worst
}

#[test]
fn rmsnorm_backward_matches_finite_differences() {
    let mut rng = Lcg(1);
    let (rows, d, eps) = (3, 8, 1e-5);
    let x = rng.vec(rows * d, 1.0);
    let w: Vec<f32> = rng.vec(d, 0.5).iter().map(|v| 1.0 + v).collect();
    let r = rng.vec(rows * d, 1.0);
    let objective = |x: &[f32], w: &[f32]| {
        let mut y = vec![0.0; rows * d];
        rmsnorm_forward(&mut y, x, w, eps);
        dot64(&y, &r)
    };
    let mut y = vec![0.0; rows * d];
    let inv = rmsnorm_forward(&mut y, &x, &w, eps);
    let (mut dx, mut dw) = (vec![0.0; rows * d], vec![0.0; d]);
    rmsnorm_backward(&mut dx, &mut dw, &r, &x, &w, &inv);
    let ex = worst_fd_error(&x, &dx, 1e-3, |x| objective(x, &w));
    let ew = worst_fd_error(&w, &dw, 1e-3, |w| objective(&x, w));
    println!("rmsnorm: dx {ex:.2e}, dw {ew:.2e}");
    assert!(ex < TOLERANCE && ew < TOLERANCE);
}

#[test]
fn rope_backward_matches_finite_differences_and_rotates_halves() {
    let mut rng = Lcg(2);
    let (seq, head_dim, heads) = (4, 6, 2);
    let width = heads * head_dim;
    let table = RopeTable::new(head_dim, seq, 100.0);
    let x = rng.vec(seq * width, 1.0);
    let r = rng.vec(seq * width, 1.0);

    // Independent check of the layout: position 3, head 1, pair i = 1 rotates (x[1], x[4]).
    let mut y = x.clone();
    table.forward(&mut y, width, seq);
    let (pos, base, i) = (3, 3 * width + head_dim, 1);
    let a = pos as f64 * 100f64.powf(-2.0 * i as f64 / head_dim as f64);
    let (lo, hi) = (x[base + i] as f64, x[base + i + 3] as f64);
    assert!((y[base + i] as f64 - (lo * a.cos() - hi * a.sin())).abs() < 1e-6);
    assert!((y[base + i + 3] as f64 - (hi * a.cos() + lo * a.sin())).abs() < 1e-6);

    let mut dx = r.clone();
    table.backward(&mut dx, width, seq);
    let err = worst_fd_error(&x, &dx, 1e-3, |x| {
        let mut y = x.to_vec();
        table.forward(&mut y, width, seq);
        dot64(&y, &r)
    });
    println!("rope: {err:.2e}");
    assert!(err < TOLERANCE);
}

#[test]
fn softmax_backward_matches_finite_differences() {
    let mut rng = Lcg(3);
    let x = rng.vec(7, 3.0);
    let r = rng.vec(7, 1.0);
    let mut y = x.clone();
    softmax_forward(&mut y);
    assert!((y.iter().sum::<f32>() - 1.0).abs() < 1e-6);
    let mut dx = vec![0.0; 7];
    softmax_backward(&mut dx, &y, &r);
    let err = worst_fd_error(&x, &dx, 1e-3, |x| {
        let mut y = x.to_vec();
        softmax_forward(&mut y);
        dot64(&y, &r)
    });
    println!("softmax: {err:.2e}");
    assert!(err < TOLERANCE);
}

#[test]
fn swiglu_backward_matches_finite_differences() {
    let mut rng = Lcg(4);
    let n = 12;
    let (gate, up, r) = (rng.vec(n, 3.0), rng.vec(n, 1.0), rng.vec(n, 1.0));
    let objective = |g: &[f32], u: &[f32]| {
        let mut a = vec![0.0; n];
        swiglu_forward(&mut a, g, u);
        dot64(&a, &r)
    };
    let (mut dg, mut du) = (vec![0.0; n], vec![0.0; n]);
    swiglu_backward(&mut dg, &mut du, &r, &gate, &up);
    let eg = worst_fd_error(&gate, &dg, 1e-3, |g| objective(g, &up));
    let eu = worst_fd_error(&up, &du, 1e-3, |u| objective(&gate, u));
    println!("swiglu: dgate {eg:.2e}, dup {eu:.2e}");
    assert!(eg < TOLERANCE && eu < TOLERANCE);
}

#[test]
fn gqa_attention_backward_matches_finite_differences() {
    let config = tiny(Family::Llama, 4, 2, 4, false);
    let mut rng = Lcg(5);
    let seq = 5;
    let (q_dim, kv_dim) = (config.q_dim(), config.kv_dim());
    let (q, k, v) = (
        rng.vec(seq * q_dim, 1.0),
        rng.vec(seq * kv_dim, 1.0),
        rng.vec(seq * kv_dim, 1.0),
    );
    let r = rng.vec(seq * q_dim, 1.0);
    let objective = |q: &[f32], k: &[f32], v: &[f32]| {
        let mut out = vec![0.0; seq * q_dim];
        attention_forward(&config, seq, q, k, v, &mut out);
        dot64(&out, &r)
    };
    let mut out = vec![0.0; seq * q_dim];
    let probs = attention_forward(&config, seq, &q, &k, &v, &mut out);
    // Causality, independently: the first token attends only to itself, so its output is v_0.
    assert!(out[..4]
        .iter()
        .zip(&v[..4])
        .all(|(o, v)| (o - v).abs() < 1e-6));
    let (mut dq, mut dk, mut dv) = (vec![0.0; q.len()], vec![0.0; k.len()], vec![0.0; v.len()]);
    attention_backward(
        &config, seq, &q, &k, &v, &probs, &r, &mut dq, &mut dk, &mut dv,
    );
    let eq = worst_fd_error(&q, &dq, 1e-3, |q| objective(q, &k, &v));
    let ek = worst_fd_error(&k, &dk, 1e-3, |k| objective(&q, k, &v));
    let ev = worst_fd_error(&v, &dv, 1e-3, |v| objective(&q, &k, v));
    println!("attention: dq {eq:.2e}, dk {ek:.2e}, dv {ev:.2e}");
    assert!(eq < TOLERANCE && ek < TOLERANCE && ev < TOLERANCE);
}

#[test]
fn cross_entropy_backward_matches_finite_differences() {
    let mut rng = Lcg(6);
    let (n, vocab) = (3, 5);
    let logits = rng.vec(n * vocab, 2.0);
    let targets = [4u32, 0, 2];
    for weights in [None, Some(&[1.0f32, 0.0, 1.0][..])] {
        let mut d = vec![0.0; n * vocab];
        let loss = cross_entropy_forward_backward(&mut d, &logits, &targets, weights, vocab);
        assert_eq!(
            loss,
            cross_entropy_forward(&logits, &targets, weights, vocab)
        );
        let err = worst_fd_error(&logits, &d, 1e-3, |l| {
            cross_entropy_forward(l, &targets, weights, vocab)
        });
        println!("cross-entropy (weights {weights:?}): {err:.2e}");
        assert!(err < TOLERANCE);
    }
    // Hand-computed: uniform logits give ln(vocab) (to f32 precision: logsumexp is f32).
    let uniform = cross_entropy_forward(&[0.0; 5], &[1], None, 5);
    assert!((uniform - 5f64.ln()).abs() < 1e-6);
    // A weight-0 position is left out of the mean, not averaged in as 0.
    let one = |i: usize| {
        cross_entropy_forward(&logits[i * vocab..][..vocab], &targets[i..=i], None, vocab)
    };
    let masked = cross_entropy_forward(&logits, &targets, Some(&[1.0, 0.0, 1.0]), vocab);
    assert!((masked - (one(0) + one(2)) / 2.0).abs() < 1e-12);
    assert_eq!(
        cross_entropy_forward(&logits, &targets, Some(&[0.0; 3]), vocab),
        0.0
    );
}

fn tiny(
    family: Family,
    n_heads: usize,
    n_kv_heads: usize,
    head_dim: usize,
    tied: bool,
) -> ModelConfig {
    let config = ModelConfig {
        family,
        dim: 16,
        n_layers: 2,
        n_heads,
        n_kv_heads,
        head_dim,
        hidden_dim: 24,
        vocab_size: 19,
        max_seq_len: 8,
        rope_theta: 100.0,
        norm_eps: 1e-5,
        tied_embeddings: tied,
        qk_norm: family == Family::Qwen3,
        special_tokens: Default::default(),
    };
    config.validate().unwrap();
    config
}

/// Random weights large enough (std ≈ 0.3, norm weights 1 ± 0.5) that every path carries a
/// gradient well above the finite-difference noise floor.
fn random_params(config: &ModelConfig, seed: u64) -> Params {
    let mut rng = Lcg(seed);
    let mut p = Params::zeros(config);
    for (_, mut t) in p.iter_mut() {
        let is_norm = t.shape().len() == 1;
        for x in t.data_mut() {
            *x = if is_norm {
                1.0 + 0.5 * rng.next_f32()
            } else {
                0.5 * rng.next_f32()
            };
        }
    }
    p
}

/// Checks `samples` random entries of every parameter tensor against central differences of
/// the whole loss, weighted by `weights` (`[2·5]` target weights) when given.
fn check_model(config: &ModelConfig, seed: u64, weights: Option<&[f32]>) {
    let mut rng = Lcg(seed);
    let params = random_params(config, seed + 100);
    let rows: Vec<Vec<u32>> = (0..2)
        .map(|_| {
            (0..6)
                .map(|_| rng.below(config.vocab_size) as u32)
                .collect()
        })
        .collect();
    let (_, grads) = loss_and_grads(config, &params, &rows, weights).unwrap();
    let h = 1e-2f32;
    let samples = 6;
    let mut worst_overall = 0.0f64;
    for ((name, g), (_, w)) in grads.iter().into_iter().zip(params.iter()) {
        let scale = g.data().iter().fold(0.0f64, |m, v| m.max(v.abs() as f64));
        assert!(
            scale > 1e-4,
            "{name}: gradient vanishes, the check would be vacuous"
        );
        let mut worst = 0.0f64;
        for _ in 0..samples {
            let i = rng.below(w.len());
            let loss_at = |value: f32| {
                let mut p = params.clone();
                let mut t = p
                    .iter_mut()
                    .into_iter()
                    .find(|(n, _)| *n == name)
                    .unwrap()
                    .1;
                t.data_mut()[i] = value;
                loss_and_grads(config, &p, &rows, weights).unwrap().0
            };
            let (xp, xm) = (w.data()[i] + h, w.data()[i] - h);
            let fd = (loss_at(xp) - loss_at(xm)) / (xp - xm) as f64;
            worst = worst.max((fd - g.data()[i] as f64).abs() / scale);
        }
        println!("  {name:45} |g|max {scale:.2e}  worst rel {worst:.2e}");
        assert!(
            worst < TOLERANCE,
            "{name}: finite differences disagree by {worst:.2e} of the gradient scale"
        );
        worst_overall = worst_overall.max(worst);
    }
    println!("worst overall {worst_overall:.2e}");
}

#[test]
fn whole_loss_gradient_mha_untied() {
    check_model(&tiny(Family::Llama, 2, 2, 8, false), 11, None);
}

#[test]
fn whole_loss_gradient_gqa_tied() {
    check_model(&tiny(Family::Llama, 4, 2, 4, true), 12, None);
}

#[test]
fn whole_loss_gradient_qwen3_qk_norm_wide_heads() {
    check_model(&tiny(Family::Qwen3, 4, 2, 6, true), 13, None);
}

#[test]
fn whole_loss_gradient_under_a_loss_mask() {
    // Row 0 counts its middle targets, row 1 only its last: prompt and padding both masked.
    let weights = [0.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0];
    check_model(&tiny(Family::Qwen3, 4, 2, 6, false), 14, Some(&weights));
}
