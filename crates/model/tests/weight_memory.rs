//! The weights are held once: the peak of live heap bytes while training on the CPU device,
//! counted by a global allocator, against what the config implies. Full fine-tuning holds
//! fp32 weights, gradients and AdamW's two moments (16 bytes per parameter, 12 with the
//! moments in bf16) plus activations; a LoRA run holds its frozen base once (4 bytes per parameter) plus the
//! adapter and activations. A second copy of the block matrices (what the kernels read,
//! beside the masters) would add 4 bytes per matrix parameter, which both bounds exclude.
//! On a device that stages its own copy (`cpu-f16`, like the ANE), a LoRA run keeps no host
//! copy of the block matrices beside the staged one, and its losses stay the same.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use anetrain_data::rng::SplitMix64;
use anetrain_data::{Sampling, Split, Tokens};
use anetrain_device::{CpuDevice, Device, Precision};
use anetrain_model::config::ModelConfig;
use anetrain_model::engine::{DeviceEngine, Engine, ReferenceEngine};
use anetrain_model::lora::{Adapter, Layers, LoraConfig, Target};
use anetrain_model::params::{Linear, Params};
use anetrain_model::train::{BaseRef, StatePrecision, TrainOptions, Trainer};

/// The system allocator, counting the bytes live now and the most ever live.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded unchanged to `System`; the counters only observe sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc(layout);
        if !p.is_null() {
            let now = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, p: *mut u8, layout: Layout) {
        System.dealloc(p, layout);
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const SEQ: usize = 8;
const STEPS: u64 = 2;

/// Weights dominate activations here (6.5M parameters, 8-token sequences), so a second copy
/// of the block matrices stands out clearly against the activations.
fn config() -> ModelConfig {
    let tiny = ModelConfig::preset("tiny-qwen3").unwrap();
    ModelConfig {
        dim: 512,
        n_layers: 2,
        n_heads: 8,
        n_kv_heads: 4,
        head_dim: 64,
        hidden_dim: 1536,
        vocab_size: 512,
        max_seq_len: SEQ,
        ..tiny
    }
}

/// Parameters in the blocks' seven projections, from the config.
fn matrix_params(c: &ModelConfig) -> usize {
    let per_layer: usize = Linear::ALL
        .iter()
        .map(|l| {
            let (o, i) = l.shape(c);
            o * i
        })
        .sum();
    c.n_layers * per_layer
}

fn split(c: &ModelConfig) -> Split {
    let mut rng = SplitMix64::new(3);
    let n = STEPS as usize * (SEQ + 1) + 1;
    let tokens = (0..n).map(|_| rng.below(c.vocab_size) as u32).collect();
    Split {
        train: Arc::new(Tokens::new(tokens)),
        val: None,
    }
}

fn options() -> TrainOptions {
    TrainOptions {
        steps: STEPS,
        batch: 1,
        seq: SEQ,
        sampling: Sampling::Sequential,
        ..TrainOptions::default()
    }
}

/// Peak live heap bytes above the starting level while `run` runs.
fn peak_of(run: impl FnOnce()) -> usize {
    let base = LIVE.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);
    run();
    PEAK.load(Ordering::Relaxed) - base
}

fn engine(c: &ModelConfig, p: &Params) -> Box<DeviceEngine> {
    engine_on(c, p, Box::new(CpuDevice::default()))
}

fn engine_on(c: &ModelConfig, p: &Params, device: Box<dyn Device>) -> Box<DeviceEngine> {
    Box::new(DeviceEngine::new(c, device, SEQ, p).unwrap())
}

fn fp16_device() -> Box<dyn Device> {
    Box::new(CpuDevice::new(Precision::F16))
}

/// A LoRA run on the base of seed 1, with its engine made from the base.
fn lora_trainer(
    c: &ModelConfig,
    data: &Split,
    engine: impl FnOnce(&Params) -> Box<dyn Engine>,
) -> Trainer {
    let base = Params::init(c, 1).unwrap();
    let lora = LoraConfig {
        rank: 8,
        alpha: 16.0,
        targets: Target::ALL.to_vec(),
        layers: Layers::All,
    };
    let adapter = Adapter::init(lora, c, 2).unwrap();
    let base_ref = BaseRef {
        path: "random weights".into(),
        hash: String::new(),
    };
    let e = engine(&base);
    Trainer::new_adapter(c, base, base_ref, adapter, options(), data.clone(), e).unwrap()
}

/// Every step's loss of `t` to the end.
fn losses(t: &mut Trainer) -> Vec<f32> {
    let mut out = Vec::new();
    while !t.is_done() {
        out.push(t.step().unwrap().loss);
    }
    out
}

#[test]
fn training_on_the_cpu_device_holds_the_weights_once() {
    // Each worker thread keeps GEMM packing buffers; two keep them small next to the weights
    // on any machine.
    rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build_global()
        .unwrap();
    let c = config();
    let n = Params::zeros(&c).num_params();
    let second_copy = 4 * matrix_params(&c);
    let data = split(&c);

    let full = peak_of(|| {
        let params = Params::init(&c, 1).unwrap();
        let e = engine(&c, &params);
        let mut t = Trainer::new(&c, params, options(), data.clone(), e).unwrap();
        while !t.is_done() {
            t.step().unwrap();
        }
    });
    // Weights, gradients and both moments must all be there (the counter sees them); a
    // second copy of the matrices would exceed half of its size in activations.
    assert!(full >= 16 * n, "full: {full} bytes for {n} parameters");
    assert!(
        full < 16 * n + second_copy / 2,
        "full fine-tuning peaked at {:.2} bytes per parameter; weights, gradients and AdamW \
         moments are 16 and a second copy of the matrices adds {:.2}",
        full as f64 / n as f64,
        second_copy as f64 / n as f64
    );

    // With AdamW's moments in bf16 the same run holds 12 bytes per parameter; fp32 moments
    // would add 4, more than the activations' allowance.
    let bf16 = peak_of(|| {
        let params = Params::init(&c, 1).unwrap();
        let e = engine(&c, &params);
        let options = TrainOptions {
            optimizer: options().optimizer.with_state(StatePrecision::Bf16),
            ..options()
        };
        let mut t = Trainer::new(&c, params, options, data.clone(), e).unwrap();
        while !t.is_done() {
            t.step().unwrap();
        }
    });
    println!(
        "peak live heap per parameter: {:.2} B with fp32 moments, {:.2} B with bf16 moments",
        full as f64 / n as f64,
        bf16 as f64 / n as f64
    );
    assert!(bf16 >= 12 * n, "bf16: {bf16} bytes for {n} parameters");
    assert!(
        bf16 < 12 * n + second_copy / 2,
        "full fine-tuning with bf16 moments peaked at {:.2} bytes per parameter; weights, \
         gradients and bf16 moments are 12 and fp32 moments would add 4",
        bf16 as f64 / n as f64
    );

    let lora = peak_of(|| {
        let mut t = lora_trainer(&c, &data, |base| engine(&c, base));
        losses(&mut t);
    });
    assert!(lora >= 4 * n, "lora: {lora} bytes for {n} parameters");
    assert!(
        lora < 4 * n + second_copy / 2,
        "LoRA peaked at {:.2} bytes per base parameter; the base is 4 and a second copy of its \
         matrices adds {:.2}",
        lora as f64 / n as f64,
        second_copy as f64 / n as f64
    );

    lora_on_a_copying_device_keeps_no_host_matrices(&c, &data);
}

/// What the engine alone holds once staged is the device's share; a LoRA trainer on it may
/// add the host's embedding, norms and classifier, the adapter and activations, but not the
/// block matrices (4 bytes per matrix parameter).
fn lora_on_a_copying_device_keeps_no_host_matrices(c: &ModelConfig, data: &Split) {
    let matrices = 4 * matrix_params(c);
    let host_rest = 4 * (Params::zeros(c).num_params() - matrix_params(c));

    let before = LIVE.load(Ordering::Relaxed);
    let staged_engine = {
        let base = Params::init(c, 1).unwrap();
        engine_on(c, &base, fp16_device())
    };
    let engine_only = LIVE.load(Ordering::Relaxed) - before;
    drop(staged_engine);

    let before = LIVE.load(Ordering::Relaxed);
    let mut t = lora_trainer(c, data, |base| engine_on(c, base, fp16_device()));
    let held = LIVE.load(Ordering::Relaxed) - before;
    // The adapter's weights, gradients and AdamW moments.
    let adapter = 16 * t.trainable_params();
    assert!(
        !t.params().holds_block_matrices(),
        "the host still holds the block matrices"
    );
    assert!(
        held < engine_only + host_rest + adapter + matrices / 2,
        "a LoRA trainer on cpu-f16 holds {held} bytes; the staged engine alone {engine_only}, the \
         host's non-matrix weights {host_rest}, the adapter with gradients and moments \
         {adapter}, and a host copy of the block matrices would add {matrices}"
    );
    let staged_only = losses(&mut t);

    let mut kept = lora_trainer(c, data, |_| Box::new(ReferenceEngine::new(c)));
    assert!(kept.params().holds_block_matrices());
    let reference = losses(&mut kept);
    assert_eq!(staged_only.len(), reference.len());
    for (step, (a, b)) in staged_only.iter().zip(&reference).enumerate() {
        assert!(
            (a - b).abs() <= 2e-2 * b.abs(),
            "step {step}: loss {a} on cpu-f16 with the base staged only, {b} on the fp32 \
             reference keeping the base on the host"
        );
    }
}
