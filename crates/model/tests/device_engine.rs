//! The DeviceEngine (MIL kernels on the CPU device plus the CPU ops) against the plain-Rust
//! ReferenceEngine: loss, logits and every gradient on tiny MHA, GQA and Qwen3 configs, tied
//! and untied; finite differences through the engine's own loss; and the fp16 error printed.

mod common;
use common::{check_finite_differences, rel_err};

use anetrain_data::Batch;
use anetrain_device::{CpuDevice, Precision};
use anetrain_model::config::ModelConfig;
use anetrain_model::engine::{DeviceEngine, Engine, ReferenceEngine};
use anetrain_model::params::Params;
use anetrain_model::reference;

const SEQ: usize = 16;

/// Seeded weights with the norm gains moved away from 1, so a missing gain shows.
fn params(c: &ModelConfig, seed: u64) -> Params {
    let mut p = Params::init(c, seed).unwrap();
    for (name, mut t) in p.iter_mut() {
        if t.shape().len() == 1 {
            for (i, v) in t.data_mut().iter_mut().enumerate() {
                *v = 1.0 + 0.3 * ((i as f32 * 0.7 + name.len() as f32).sin());
            }
        }
    }
    p
}

fn rows(c: &ModelConfig, batch: usize, seed: u32) -> Batch {
    let rows: Vec<Vec<u32>> = (0..batch as u32)
        .map(|b| {
            (0..=SEQ as u32)
                .map(|t| (t * 37 + b * 101 + seed * 13 + t * t * 7) % c.vocab_size as u32)
                .collect()
        })
        .collect();
    Batch::from_rows(&rows, None).unwrap()
}

fn engine(c: &ModelConfig, precision: Precision, p: &Params) -> DeviceEngine {
    DeviceEngine::new(c, Box::new(CpuDevice::new(precision)), SEQ, p).unwrap()
}

/// `(name, worst relative error)` over every tensor of `got` against `want`.
fn worst(got: &Params, want: &Params) -> (String, f32) {
    got.iter()
        .into_iter()
        .zip(want.iter())
        .map(|((n, a), (_, b))| (n, rel_err(a.data(), b.data())))
        .fold(
            (String::new(), 0.0),
            |acc, x| if x.1 > acc.1 { x } else { acc },
        )
}

fn configs() -> Vec<ModelConfig> {
    let mut untied_gqa = ModelConfig::preset("tiny-gqa").unwrap();
    untied_gqa.tied_embeddings = false;
    vec![
        ModelConfig::preset("tiny").unwrap(),
        ModelConfig::preset("tiny-gqa").unwrap(),
        untied_gqa,
        ModelConfig::preset("tiny-qwen3").unwrap(),
    ]
}

#[test]
fn step_matches_the_reference_engine_in_f32() {
    for c in configs() {
        let p = params(&c, 3);
        let batch = rows(&c, 2, 1);
        let loss_scale = 8.0;
        let mut want = Params::zeros(&c);
        let ref_stats = ReferenceEngine::new(&c)
            .forward_backward(&p, &batch, loss_scale, &mut want)
            .unwrap();
        let mut dev = engine(&c, Precision::F32, &p);
        let mut got = Params::zeros(&c);
        let stats = dev
            .forward_backward(&p, &batch, loss_scale, &mut got)
            .unwrap();
        assert_eq!(stats.tokens, 2 * SEQ);
        let loss_err = (stats.loss - ref_stats.loss).abs() / ref_stats.loss;
        assert!(
            loss_err < 1e-5,
            "{c:?}: loss {} vs {}",
            stats.loss,
            ref_stats.loss
        );
        for ((name, a), (_, b)) in got.iter().into_iter().zip(want.iter()) {
            let e = rel_err(a.data(), b.data());
            assert!(
                e <= 1e-4,
                "{name} ({:?}, tied {}): relative error {e}",
                c.family,
                c.tied_embeddings
            );
        }
        let eval = dev.loss(&p, &batch).unwrap();
        assert!((eval.loss - ref_stats.loss).abs() / ref_stats.loss < 1e-5);
    }
}

#[test]
fn restaging_replaces_the_weights_every_kernel_reads() {
    // f32 reads one stacked copy in place; f16 rounds its inputs, so it stages copies.
    for (precision, tol) in [(Precision::F32, 1e-5), (Precision::F16, 2e-2)] {
        let c = ModelConfig::preset("tiny-gqa").unwrap();
        let (first, second) = (params(&c, 3), params(&c, 11));
        let batch = rows(&c, 1, 4);
        let mut dev = engine(&c, precision, &first);
        dev.loss(&first, &batch).unwrap();
        dev.stage(&second).unwrap();
        let mut want = Params::zeros(&c);
        let want_loss = ReferenceEngine::new(&c)
            .forward_backward(&second, &batch, 1.0, &mut want)
            .unwrap()
            .loss;
        let mut got = Params::zeros(&c);
        let loss = dev
            .forward_backward(&second, &batch, 1.0, &mut got)
            .unwrap()
            .loss;
        assert!(
            (loss - want_loss).abs() / want_loss < tol,
            "{precision:?}: loss {loss} after restaging, the reference on the new weights gives {want_loss}"
        );
        let (name, e) = worst(&got, &want);
        assert!(e < 100.0 * tol, "{precision:?}: {name} relative error {e}");
    }
}

#[test]
fn logits_match_the_reference_forward_and_accept_short_prompts() {
    let c = ModelConfig::preset("tiny-qwen3").unwrap();
    let p = params(&c, 5);
    let tokens: Vec<u32> = rows(&c, 1, 2).inputs(0).to_vec();
    let want = reference::forward(&c, &p, std::slice::from_ref(&tokens)).unwrap();
    let mut dev = engine(&c, Precision::F32, &p);
    let got = dev.logits(&p, &tokens).unwrap();
    assert!(
        rel_err(&got, &want.data) < 1e-5,
        "error {}",
        rel_err(&got, &want.data)
    );
    // A prefix gives the prefix's logits: later padding cannot leak back through the mask.
    let short = dev.logits(&p, &tokens[..5]).unwrap();
    assert_eq!(short.len(), 5 * c.vocab_size);
    assert!(rel_err(&short, &want.data[..5 * c.vocab_size]) < 1e-5);
}

#[test]
fn gradients_accumulate_and_are_bit_reproducible() {
    let c = ModelConfig::preset("tiny-gqa").unwrap();
    let p = params(&c, 9);
    let batch = rows(&c, 2, 4);
    let mut dev = engine(&c, Precision::F32, &p);
    let mut first = Params::zeros(&c);
    dev.forward_backward(&p, &batch, 1.0, &mut first).unwrap();
    // Another batch in between leaves different values in every reused buffer.
    dev.forward_backward(&p, &rows(&c, 1, 7), 1.0, &mut Params::zeros(&c))
        .unwrap();
    let mut again = Params::zeros(&c);
    dev.forward_backward(&p, &batch, 1.0, &mut again).unwrap();
    assert!(
        first == again,
        "the same batch must give bit-identical gradients"
    );

    let mut twice = first.clone();
    dev.forward_backward(&p, &batch, 1.0, &mut twice).unwrap();
    for ((name, a), (_, b)) in twice.iter().into_iter().zip(first.iter()) {
        let doubled: Vec<f32> = b.data().iter().map(|v| 2.0 * v).collect();
        let e = rel_err(a.data(), &doubled);
        assert!(
            e < 1e-6,
            "{name}: a second pass must add to the gradient (error {e})"
        );
    }
}

#[test]
fn finite_differences_agree_with_the_engine_gradient() {
    let c = ModelConfig::preset("tiny-qwen3").unwrap();
    let mut p = params(&c, 21);
    let batch = rows(&c, 1, 3);
    let mut dev = engine(&c, Precision::F32, &p);
    let names = [
        "model.embed_tokens.weight",
        "model.layers.0.self_attn.q_proj.weight",
        "model.layers.1.self_attn.k_norm.weight",
        "model.layers.0.mlp.down_proj.weight",
        "model.layers.1.input_layernorm.weight",
        "model.norm.weight",
    ];
    check_finite_differences(&mut dev, &c, &mut p, &batch, &names);
}

#[test]
fn fp16_device_stays_close_to_the_reference() {
    for c in configs() {
        let p = params(&c, 3);
        let batch = rows(&c, 2, 1);
        let loss_scale = 256.0;
        let mut want = Params::zeros(&c);
        let ref_stats = ReferenceEngine::new(&c)
            .forward_backward(&p, &batch, loss_scale, &mut want)
            .unwrap();
        let mut dev = engine(&c, Precision::F16, &p);
        let mut got = Params::zeros(&c);
        let stats = dev
            .forward_backward(&p, &batch, loss_scale, &mut got)
            .unwrap();
        let loss_err = (stats.loss - ref_stats.loss).abs() / ref_stats.loss;
        let (name, e) = worst(&got, &want);
        println!(
            "cpu-f16 {:?} kv {} tied {}: loss error {loss_err:.2e}, worst gradient {name} {e:.2e}",
            c.family, c.n_kv_heads, c.tied_embeddings
        );
        assert!(loss_err < 1e-3, "fp16 loss error {loss_err}");
        assert!(e < 5e-2, "fp16 gradient error {e} in {name}");
    }
}

#[test]
fn misuse_is_reported_with_the_fix() {
    let c = ModelConfig::preset("tiny").unwrap();
    let p = params(&c, 1);
    let mut dev = DeviceEngine::new(&c, Box::new(CpuDevice::default()), SEQ, &p).unwrap();
    let mut g = Params::zeros(&c);
    let short = Batch::from_rows(&[vec![1u32; SEQ]], None).unwrap();
    let msg = dev
        .forward_backward(&p, &short, 1.0, &mut g)
        .unwrap_err()
        .to_string();
    assert!(msg.contains(&format!("seq {SEQ}")), "{msg}");
    let bad = Batch::from_rows(&[vec![c.vocab_size as u32; SEQ + 1]], None).unwrap();
    let msg = dev.loss(&p, &bad).unwrap_err().to_string();
    assert!(msg.contains("vocabulary"), "{msg}");
    let msg = DeviceEngine::new(&c, Box::new(CpuDevice::default()), c.max_seq_len + 1, &p)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(msg.contains("max_seq_len"), "{msg}");
}
