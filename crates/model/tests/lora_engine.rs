//! LoRA training in the engines: the device engine's adapter gradients (from the x and dy its
//! backward already has) against the reference engine's independent route (fused forward, full
//! dW, dA = s·Bᵀ·dW, dB = s·dW·Aᵀ) and against finite differences, on MHA, GQA and Qwen3
//! QK-norm configs; a fresh adapter (B = 0) gives exactly the base loss.

mod common;
use common::rel_err;

use anetrain_data::rng::SplitMix64;
use anetrain_data::Batch;
use anetrain_device::{CpuDevice, Precision};
use anetrain_model::config::ModelConfig;
use anetrain_model::engine::{DeviceEngine, Engine, ReferenceEngine};
use anetrain_model::lora::{Adapter, Layers, LoraConfig, Target};
use anetrain_model::params::{ParamSet, Params};

const SEQ: usize = 16;

/// `batch` rows of `SEQ + 1` tokens; `masked` weighs the first five targets of each row 0,
/// as `--mask-prompt` does, so the loss weights go through the adapter path too.
fn rows(c: &ModelConfig, batch: usize, masked: bool) -> Batch {
    let rows: Vec<Vec<u32>> = (0..batch as u32)
        .map(|b| {
            (0..=SEQ as u32)
                .map(|t| (t * 37 + b * 101 + t * t * 7 + 5) % c.vocab_size as u32)
                .collect()
        })
        .collect();
    let weights: Vec<Vec<f32>> = (0..batch)
        .map(|_| (0..SEQ).map(|t| if t < 5 { 0.0 } else { 1.0 }).collect())
        .collect();
    Batch::from_rows(&rows, masked.then_some(&weights[..])).unwrap()
}

/// An adapter on every projection of every layer with a non-zero B, so every path carries
/// signal.
fn adapter(c: &ModelConfig) -> Adapter {
    adapter_on(c, Target::ALL.to_vec(), Layers::All)
}

/// An adapter on `targets` of `layers` with a non-zero B.
fn adapter_on(c: &ModelConfig, targets: Vec<Target>, layers: Layers) -> Adapter {
    let config = LoraConfig {
        rank: 4,
        alpha: 8.0,
        targets,
        layers,
    };
    let mut a = Adapter::init(config, c, 5).unwrap();
    let mut rng = SplitMix64::new(9);
    for (_, pair) in a.modules_mut() {
        for v in pair.b.data_mut() {
            *v = (rng.unit() as f32 - 0.5) * 0.2;
        }
    }
    a
}

fn configs() -> Vec<ModelConfig> {
    ["tiny", "tiny-gqa", "tiny-qwen3"]
        .map(|n| ModelConfig::preset(n).unwrap())
        .to_vec()
}

fn device(c: &ModelConfig, p: &Params) -> DeviceEngine {
    DeviceEngine::new(c, Box::new(CpuDevice::new(Precision::F32)), SEQ, p).unwrap()
}

#[test]
fn device_adapter_gradients_match_the_reference_route() {
    for c in configs() {
        check_against_reference(&c, &adapter(&c));
    }
}

/// The backward stops at the lowest adapted layer, and there after the lowest adapted
/// projection (no kernel below it, no input gradient): gradients still equal the reference's
/// for adapters whose lowest projection is each stage of the layer.
#[test]
fn a_backward_cut_at_the_lowest_adapted_projection_keeps_the_reference_gradients() {
    use Target::*;
    let stages = [
        vec![DownProj],
        vec![UpProj, DownProj],
        vec![GateProj],
        vec![OProj, DownProj],
        vec![VProj],
        vec![QProj, KProj],
    ];
    for c in configs() {
        for targets in &stages {
            check_against_reference(&c, &adapter_on(&c, targets.clone(), Layers::Top(1)));
        }
    }
}

/// The device engine's adapter loss and gradients against the reference engine's.
fn check_against_reference(c: &ModelConfig, a: &Adapter) {
    let p = Params::init(c, 3).unwrap();
    let batch = rows(c, 2, true);
    let mut reference = ReferenceEngine::new(c);
    reference.set_adapter(Some(a)).unwrap();
    let mut want = a.zeros_like();
    let ref_stats = reference
        .adapter_backward(&p, &batch, 4.0, &mut want)
        .unwrap();
    let mut dev = device(c, &p);
    dev.set_adapter(Some(a)).unwrap();
    let mut got = a.zeros_like();
    let stats = dev.adapter_backward(&p, &batch, 4.0, &mut got).unwrap();
    assert!(
        (stats.loss - ref_stats.loss).abs() < 1e-4,
        "{:?} kv{}: loss {} vs {}",
        c.family,
        c.n_kv_heads,
        stats.loss,
        ref_stats.loss
    );
    for ((name, g), (_, w)) in got.tensors().into_iter().zip(want.tensors()) {
        let err = rel_err(g.data(), w.data());
        assert!(
            err < 1e-3,
            "{name} ({}): relative error {err}",
            a.config().targets_list()
        );
        assert!(w.data().iter().any(|&v| v != 0.0), "{name} has no gradient");
    }
}

#[test]
fn adapter_gradients_match_finite_differences() {
    for c in configs() {
        let p = Params::init(&c, 21).unwrap();
        let mut a = adapter(&c);
        let batch = rows(&c, 1, false);
        let mut dev = device(&c, &p);
        dev.set_adapter(Some(&a)).unwrap();
        let mut g = a.zeros_like();
        dev.adapter_backward(&p, &batch, 1.0, &mut g).unwrap();
        let h = 1e-2f32;
        let names = [
            "model.layers.0.self_attn.q_proj.lora_A.weight",
            "model.layers.1.self_attn.k_proj.lora_B.weight",
            "model.layers.0.mlp.gate_proj.lora_B.weight",
            "model.layers.1.mlp.down_proj.lora_A.weight",
        ];
        for name in names {
            let grad = g.tensors().into_iter().find(|(n, _)| n == name).unwrap().1;
            let (i, &analytic) = grad
                .data()
                .iter()
                .enumerate()
                .max_by(|x, y| x.1.abs().total_cmp(&y.1.abs()))
                .unwrap();
            let mut loss_at = |delta: f32| {
                let shift = |a: &mut Adapter, d: f32| {
                    let t = a
                        .tensors_mut()
                        .into_iter()
                        .find(|(n, _)| n == name)
                        .unwrap();
                    t.1.data_mut()[i] += d;
                };
                shift(&mut a, delta);
                dev.set_adapter(Some(&a)).unwrap();
                let l = dev.loss(&p, &batch).unwrap().loss as f64;
                shift(&mut a, -delta);
                l
            };
            let numeric = (loss_at(h) - loss_at(-h)) / (2.0 * h as f64);
            let err = (numeric - analytic as f64).abs() / (analytic.abs() as f64);
            assert!(
                err < 3e-2,
                "{:?} kv{} {name}[{i}]: finite difference {numeric} vs gradient {analytic}",
                c.family,
                c.n_kv_heads
            );
        }
    }
}

#[test]
fn a_fresh_adapter_gives_exactly_the_base_loss() {
    for c in configs() {
        let p = Params::init(&c, 4).unwrap();
        let batch = rows(&c, 2, false);
        let fresh = Adapter::init(LoraConfig::default(), &c, 1).unwrap();
        let mut dev = device(&c, &p);
        let base = dev.loss(&p, &batch).unwrap();
        dev.set_adapter(Some(&fresh)).unwrap();
        assert_eq!(dev.loss(&p, &batch).unwrap(), base);
        let mut reference = ReferenceEngine::new(&c);
        let ref_base = reference.loss(&p, &batch).unwrap();
        reference.set_adapter(Some(&fresh)).unwrap();
        assert_eq!(reference.loss(&p, &batch).unwrap(), ref_base);
    }
}

#[test]
fn full_gradients_are_refused_while_an_adapter_is_on() {
    let c = ModelConfig::preset("tiny").unwrap();
    let p = Params::init(&c, 4).unwrap();
    let a = adapter(&c);
    let mut dev = device(&c, &p);
    dev.set_adapter(Some(&a)).unwrap();
    let err = dev
        .forward_backward(&p, &rows(&c, 1, false), 1.0, &mut Params::zeros(&c))
        .unwrap_err()
        .to_string();
    assert!(err.contains("set_adapter(None)"), "{err}");
    dev.set_adapter(None).unwrap();
    let mut g = a.zeros_like();
    let err = dev
        .adapter_backward(&p, &rows(&c, 1, false), 1.0, &mut g)
        .unwrap_err()
        .to_string();
    assert!(err.contains("set_adapter"), "{err}");
}
