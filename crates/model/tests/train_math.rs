//! The trainer's arithmetic against hand-computed values: optimizer steps, the schedule,
//! clipping and the loss scaler.

use anetrain_model::config::ModelConfig;
use anetrain_model::hf::StoredValues;
use anetrain_model::params::{Linear, Params};
use anetrain_model::train::clip::{clip_global_norm, global_norm};
use anetrain_model::train::{LossScaler, Optimizer, OptimizerSpec, Schedule, StatePrecision};
use half::bf16;

/// Zero parameters and gradients of the tiny model.
fn zeros() -> (Params, Params) {
    let c = ModelConfig::preset("tiny").unwrap();
    (Params::zeros(&c), Params::zeros(&c))
}

#[test]
fn adamw_matches_hand_computed_steps_with_decay_and_bias_correction() {
    let (mut p, mut g) = zeros();
    let spec = OptimizerSpec::Adamw {
        beta1: 0.9,
        beta2: 0.95,
        eps: 1e-8,
        weight_decay: 0.1,
        state: StatePrecision::Fp32,
    };
    let mut opt = Optimizer::new(spec, &p);
    p.embed_tokens.data_mut()[0] = 0.5;
    p.norm.data_mut()[0] = 1.0;
    g.embed_tokens.data_mut()[0] = 0.1;
    g.norm.data_mut()[0] = 0.1;
    opt.step(&mut p, &g, 0.01, 1.0);
    // Step 1 by hand: m = 0.01, v = 0.0005, m̂ = 0.1, v̂ = 0.01, m̂/√v̂ = 1;
    // w = 0.5 − 0.01·(1 + 0.1·0.5) = 0.4895. The norm gain gets no decay: 1 − 0.01 = 0.99.
    assert!((p.embed_tokens.data()[0] - 0.4895).abs() < 1e-6);
    assert!((p.norm.data()[0] - 0.99).abs() < 1e-6);
    // A parameter with zero gradient and zero value does not move.
    assert_eq!(p.embed_tokens.data()[1], 0.0);

    g.embed_tokens.data_mut()[0] = -0.2;
    opt.step(&mut p, &g, 0.01, 1.0);
    // Step 2 by hand: m = 0.9·0.01 − 0.1·0.2 = −0.011, v = 0.95·0.0005 + 0.05·0.04 = 0.002475,
    // m̂ = −0.011/0.19, v̂ = 0.002475/0.0975.
    let m_hat = -0.011f64 / 0.19;
    let v_hat = 0.002475f64 / 0.0975;
    let expected = 0.4895 - 0.01 * (m_hat / (v_hat.sqrt() + 1e-8) + 0.1 * 0.4895);
    assert!((p.embed_tokens.data()[0] as f64 - expected).abs() < 1e-6);
    assert_eq!(opt.updates(), 2);
}

/// AdamW written out tensor by tensor, element by element: the optimizer must match it bit
/// for bit however it splits the work.
fn naive_adamw(p: &mut Params, g: &Params, m: &mut Params, v: &mut Params, t: i32, lr: f32) {
    let (b1, b2, eps, decay) = (0.9f32, 0.95f32, 1e-8f32, 0.1f32);
    let (c1, c2) = (1.0 - b1.powi(t), 1.0 - b2.powi(t));
    let (pw, mw, vw) = (p.iter_mut(), m.iter_mut(), v.iter_mut());
    for ((((_, mut w), (_, g)), (_, mut m)), (_, mut v)) in
        pw.into_iter().zip(g.iter()).zip(mw).zip(vw)
    {
        let wd = if w.shape().len() > 1 { decay } else { 0.0 };
        let (m, v) = (m.data_mut(), v.data_mut());
        for (i, w) in w.data_mut().iter_mut().enumerate() {
            let g = g.data()[i];
            m[i] = b1 * m[i] + (1.0 - b1) * g;
            v[i] = b2 * v[i] + (1.0 - b2) * g * g;
            *w -= lr * ((m[i] / c1) / ((v[i] / c2).sqrt() + eps) + wd * *w);
        }
    }
}

/// `g` with every element multiplied by `s`, the way the trainer's separate unscale/clip
/// passes used to rewrite the gradients before the optimizer read them.
fn scaled(g: &Params, s: f32) -> Params {
    let mut out = g.clone();
    for (_, mut t) in out.iter_mut() {
        t.data_mut().iter_mut().for_each(|v| *v *= s);
    }
    out
}

#[test]
fn adamw_is_bit_identical_to_scaling_then_a_per_element_loop_on_odd_sized_tensors() {
    // An odd vocabulary makes the embedding and classifier 64·4099 elements: several parallel
    // pieces with a ragged last one.
    let mut c = ModelConfig::preset("tiny").unwrap();
    c.vocab_size = 4099;
    let mut p = Params::init(&c, 3).unwrap();
    let mut opt = Optimizer::new(OptimizerSpec::adamw(0.1), &p);
    let mut expected = p.clone();
    let (mut m, mut v) = (Params::zeros(&c), Params::zeros(&c));
    for step in 1..=3 {
        let g = Params::init(&c, 100 + step as u64).unwrap();
        // Unscale by 1/1024 and clip by 0.3, folded into the optimizer's read.
        let grad_scale = 0.3 / 1024.0;
        opt.step(&mut p, &g, 1e-2, grad_scale);
        naive_adamw(
            &mut expected,
            &scaled(&g, grad_scale),
            &mut m,
            &mut v,
            step,
            1e-2,
        );
        assert!(
            p == expected,
            "step {step} differs from the per-element loop"
        );
    }
    let named = opt.named_state();
    let (m0, v0) = (&named[0], &named[named.len() / 2]);
    assert!(
        m0.2 == StoredValues::F32(m.embed_tokens.data())
            && v0.2 == StoredValues::F32(v.embed_tokens.data())
            && m0.1 == m.embed_tokens.shape()
    );
}

#[test]
fn sgd_with_momentum_matches_hand_computed_steps() {
    let (mut p, mut g) = zeros();
    let mut opt = Optimizer::new(
        OptimizerSpec::Sgd {
            momentum: 0.9,
            weight_decay: 0.5,
        },
        &p,
    );
    Linear::QProj.get_mut(&mut p.layers[0]).data_mut()[3] = 2.0;
    Linear::QProj.get_mut(&mut g.layers[0]).data_mut()[3] = 1.0;
    opt.step(&mut p, &g, 0.1, 1.0);
    // b = 1; w = 2 − 0.1·(1 + 0.5·2) = 1.8.
    assert!((Linear::QProj.get(&p.layers[0]).data()[3] - 1.8).abs() < 1e-6);
    opt.step(&mut p, &g, 0.1, 1.0);
    // b = 0.9 + 1 = 1.9; w = 1.8 − 0.1·(1.9 + 0.9) = 1.52.
    assert!((Linear::QProj.get(&p.layers[0]).data()[3] - 1.52).abs() < 1e-6);

    let mut plain = Optimizer::new(
        OptimizerSpec::Sgd {
            momentum: 0.0,
            weight_decay: 0.0,
        },
        &p,
    );
    assert!(plain.named_state().is_empty());
    plain.step(&mut p, &g, 0.1, 1.0);
    assert!((Linear::QProj.get(&p.layers[0]).data()[3] - 1.42).abs() < 1e-6);
}

#[test]
fn schedule_warms_up_linearly_then_decays_by_cosine_to_a_tenth() {
    let s = Schedule {
        peak_lr: 1e-3,
        warmup: 10,
        total_steps: 110,
    };
    let close = |a: f32, b: f32| (a - b).abs() < 1e-9;
    assert!(close(s.lr(0), 1e-4));
    assert!(close(s.lr(4), 5e-4));
    assert!(close(s.lr(9), 1e-3));
    assert!(close(s.lr(10), 1e-3));
    // Halfway through the decay the cosine term is ½: 1e-4 + 0.9e-3·½.
    assert!(close(s.lr(60), 5.5e-4));
    assert!(close(s.lr(110), 1e-4));
    assert!(close(s.lr(1000), 1e-4));
    assert!(s.lr(30) > s.lr(31));
}

#[test]
fn clipping_scales_to_exactly_the_limit_and_leaves_small_gradients_alone() {
    let (_, mut g) = zeros();
    g.embed_tokens.data_mut()[7] = 3.0;
    Linear::DownProj.get_mut(&mut g.layers[1]).data_mut()[2] = -4.0;
    assert!((global_norm(&g) - 5.0).abs() < 1e-12);
    let before = clip_global_norm(&mut g, 1.0);
    assert!((before - 5.0).abs() < 1e-12);
    assert!((g.embed_tokens.data()[7] - 0.6).abs() < 1e-7);
    assert!((Linear::DownProj.get(&g.layers[1]).data()[2] + 0.8).abs() < 1e-7);
    assert!((global_norm(&g) - 1.0).abs() < 1e-6);
    let unchanged = g.clone();
    clip_global_norm(&mut g, 10.0);
    assert_eq!(g, unchanged);
    g.norm.data_mut()[0] = f32::INFINITY;
    assert!(!global_norm(&g).is_finite());
}

#[test]
fn global_norm_of_many_parallel_pieces_matches_a_serial_loop() {
    // A vocabulary of 4099 makes the embedding 64·4099 elements: several pieces, a ragged last.
    let mut c = ModelConfig::preset("tiny").unwrap();
    c.vocab_size = 4099;
    let g = Params::init(&c, 5).unwrap();
    let serial: f64 = g
        .iter()
        .iter()
        .flat_map(|(_, t)| t.data().iter())
        .map(|&v| v as f64 * v as f64)
        .sum::<f64>()
        .sqrt();
    let norm = global_norm(&g);
    assert!(
        ((norm - serial) / serial).abs() < 1e-12,
        "{norm} vs {serial}"
    );
    assert_eq!(norm.to_bits(), global_norm(&g).to_bits());
}

#[test]
fn loss_scaler_halves_and_counts_on_overflow_and_doubles_after_clean_steps() {
    let mut s = LossScaler::new(1024.0, 3);
    assert!(!s.update(false));
    assert_eq!((s.scale, s.skipped), (512.0, 1));
    assert!(s.update(true));
    assert!(s.update(true));
    assert_eq!(s.scale, 512.0);
    assert!(s.update(true));
    assert_eq!((s.scale, s.clean_steps), (1024.0, 0));
    // An overflow resets the clean-step count.
    s.update(true);
    s.update(false);
    s.update(true);
    s.update(true);
    assert_eq!((s.scale, s.skipped), (512.0, 2));
    // Never below 1.
    let mut low = LossScaler::new(1.0, 10);
    low.update(false);
    assert_eq!(low.scale, 1.0);
}

/// One AdamW step over bf16 moments in f64: each moment is updated from its stored value,
/// used unrounded for the weight, and stored rounded to the nearest bf16. Returns, per element
/// of `m` then `v`, how far f32 arithmetic may honestly stray from f64 before the rounding: a
/// few f32 steps of the terms summed (they can cancel to a far smaller moment).
#[allow(clippy::too_many_arguments)]
fn naive_adamw_bf16_step(
    w: &mut [f32],
    g: &[f32],
    m: &mut [bf16],
    v: &mut [bf16],
    decays: bool,
    t: i32,
    lr: f64,
    grad_scale: f64,
) -> (Vec<f64>, Vec<f64>) {
    let (b1, b2, eps) = (0.9f64, 0.95f64, 1e-8f64);
    let wd = if decays { 0.1 } else { 0.0 };
    let (c1, c2) = (1.0 - b1.powi(t), 1.0 - b2.powi(t));
    let f32_slack = 4.0 * f32::EPSILON as f64;
    let (mut m_slack, mut v_slack) = (Vec::new(), Vec::new());
    for i in 0..w.len() {
        let g = g[i] as f64 * grad_scale;
        let (m_old, v_old) = (m[i].to_f64(), v[i].to_f64());
        let m_new = b1 * m_old + (1.0 - b1) * g;
        let v_new = b2 * v_old + (1.0 - b2) * g * g;
        m_slack.push(f32_slack * (b1 * m_old.abs() + (1.0 - b1) * g.abs()));
        v_slack.push(f32_slack * v_new);
        m[i] = bf16::from_f64(m_new);
        v[i] = bf16::from_f64(v_new);
        let w_old = w[i] as f64;
        w[i] = (w_old - lr * ((m_new / c1) / ((v_new / c2).sqrt() + eps) + wd * w_old)) as f32;
    }
    (m_slack, v_slack)
}

#[test]
fn adamw_with_bf16_moments_matches_an_f64_reference_rounding_each_store() {
    let mut c = ModelConfig::preset("tiny").unwrap();
    c.vocab_size = 4099;
    let mut p = Params::init(&c, 3).unwrap();
    let spec = OptimizerSpec::adamw(0.1).with_state(StatePrecision::Bf16);
    let mut opt = Optimizer::new(spec, &p);
    let moments = |opt: &Optimizer| -> Vec<Vec<bf16>> {
        opt.named_state()
            .into_iter()
            .map(|(_, _, values)| match values {
                StoredValues::Bf16(v) => v.to_vec(),
                StoredValues::F32(_) => panic!("bf16 moments are stored as F32"),
            })
            .collect()
    };
    let n_tensors = p.iter().len();
    let (mut same, mut total) = (0usize, 0usize);
    for step in 1..=5 {
        // Gradients of very different sizes: the unscaled ones make `v` ~1e-12.
        let g = Params::init(&c, 100 + step as u64).unwrap();
        let grad_scale = if step % 2 == 0 { 0.3 / 1024.0 } else { 3.0 };
        let mut expected_w = p.clone();
        let mut expected_state = moments(&opt);
        opt.step(&mut p, &g, 1e-2, grad_scale);
        let (ms, vs) = expected_state.split_at_mut(n_tensors);
        let tensors = expected_w.iter_mut().into_iter().zip(g.iter());
        let (mut m_slack, mut v_slack) = (Vec::new(), Vec::new());
        for (((_, mut w), (_, g)), (m, v)) in tensors.zip(ms.iter_mut().zip(vs.iter_mut())) {
            let decays = w.shape().len() > 1;
            let (g, t) = (g.data(), step);
            let (ma, va) =
                naive_adamw_bf16_step(w.data_mut(), g, m, v, decays, t, 1e-2, grad_scale as f64);
            m_slack.push(ma);
            v_slack.push(va);
        }
        let slack = m_slack.into_iter().chain(v_slack);
        let states = expected_state.iter().zip(moments(&opt)).zip(slack);
        for (k, ((want, got), slack)) in states.enumerate() {
            for ((a, b), s) in want.iter().zip(&got).zip(slack) {
                // Rounded from f32 or from f64 arithmetic, the stored values may be one bf16
                // step apart (2⁻⁷ relative at most), plus what f32 may lose to cancellation.
                let (a64, b64) = (a.to_f64(), b.to_f64());
                assert!(
                    (a64 - b64).abs() <= a64.abs().max(b64.abs()) / 128.0 + s,
                    "step {step}, state tensor {k}: {b} where the reference stores {a}"
                );
                same += (a == b) as usize;
                total += 1;
            }
        }
        for ((name, want), (_, got)) in expected_w.iter().into_iter().zip(p.iter()) {
            for (a, b) in want.data().iter().zip(got.data()) {
                assert!(
                    (a - b).abs() <= 1e-6 * a.abs() + 1e-8,
                    "step {step}, {name}: weight {b}, reference {a}"
                );
            }
        }
    }
    assert!(
        same as f64 >= 0.99 * total as f64,
        "only {same} of {total} moments equal the reference's"
    );
    assert_eq!(opt.updates(), 5);
}
