//! The training loop end to end on the reference engine: bit-identical resume, total-step
//! semantics, accumulation, skipped steps on overflow, and bad data.

use std::sync::Arc;

use anetrain_data::{Batch, ByteTokenizer, Sampling, Split, SyntheticStories, TokenStream, Tokens};
use anetrain_device::{CpuDevice, Precision};
use anetrain_model::config::ModelConfig;
use anetrain_model::engine::{DeviceEngine, Engine, PassStats, ReferenceEngine};
use anetrain_model::error::Result;
use anetrain_model::lora::Adapter;
use anetrain_model::params::Params;
use anetrain_model::train::checkpoint::latest_checkpoint;
use anetrain_model::train::{Checkpoint, OptimizerSpec, TrainOptions, Trainer};

fn config() -> ModelConfig {
    let mut c = ModelConfig::preset("tiny").unwrap();
    c.vocab_size = ByteTokenizer::VOCAB_SIZE;
    c.max_seq_len = 16;
    c
}

fn corpus() -> Arc<dyn TokenStream> {
    Arc::new(SyntheticStories::generate(7, 20_000, &ByteTokenizer).unwrap())
}

fn split() -> Split {
    Split::by_fraction(corpus(), 0.05, 16).unwrap()
}

fn options(steps: u64) -> TrainOptions {
    TrainOptions {
        steps,
        batch: 2,
        seq: 16,
        accum: 2,
        lr: 3e-3,
        warmup: 2,
        seed: 5,
        sampling: Sampling::Shuffle { seed: 5 },
        eval_every: 2,
        eval_batches: 2,
        save_every: 3,
        ..TrainOptions::default()
    }
}

/// Makes the engine a test runs on.
type EngineFactory = fn(&ModelConfig, &Params) -> Box<dyn Engine>;

fn reference(c: &ModelConfig, _: &Params) -> Box<dyn Engine> {
    Box::new(ReferenceEngine::new(c))
}

fn cpu_kernels(c: &ModelConfig, p: &Params) -> Box<dyn Engine> {
    let device = Box::new(CpuDevice::new(Precision::F32));
    Box::new(DeviceEngine::new(c, device, 16, p).unwrap())
}

fn trainer(steps: u64) -> Trainer {
    trainer_on(steps, reference)
}

fn trainer_on(steps: u64, engine: EngineFactory) -> Trainer {
    let c = config();
    let params = Params::init(&c, 5).unwrap();
    let engine = engine(&c, &params);
    Trainer::new(&c, params, options(steps), split(), engine).unwrap()
}

#[test]
fn three_steps_then_resume_is_bit_identical_to_six_straight() {
    resume_is_bit_identical(reference);
}

#[test]
fn resume_is_bit_identical_on_the_mil_kernels_too() {
    resume_is_bit_identical(cpu_kernels);
}

fn resume_is_bit_identical(engine: EngineFactory) {
    let trainer = |steps| trainer_on(steps, engine);
    let mut straight = trainer(6);
    let mut straight_losses = Vec::new();
    while !straight.is_done() {
        straight_losses.push(straight.step().unwrap());
    }

    let dir = tempfile::tempdir().unwrap();
    let mut first = trainer(6);
    let mut losses = Vec::new();
    for _ in 0..3 {
        losses.push(first.step().unwrap());
    }
    assert!(first.save_due());
    first.save(dir.path()).unwrap();
    drop(first);

    let ckpt = Checkpoint::load(&latest_checkpoint(dir.path()).unwrap().unwrap()).unwrap();
    assert_eq!(ckpt.meta.step, 3);
    let c = config();
    let mut resumed =
        Trainer::resume(&ckpt, options(6), split(), engine(&c, &ckpt.params)).unwrap();
    while !resumed.is_done() {
        losses.push(resumed.step().unwrap());
    }
    assert_eq!(resumed.current_step(), 6);
    assert_eq!(resumed.params(), straight.params());
    assert_eq!(resumed.optimizer(), straight.optimizer());
    assert_eq!(resumed.loss_scaler(), straight.loss_scaler());
    let key =
        |m: &anetrain_model::train::StepMetrics| (m.step, m.loss, m.lr, m.grad_norm, m.val_loss);
    assert_eq!(
        losses.iter().map(key).collect::<Vec<_>>(),
        straight_losses.iter().map(key).collect::<Vec<_>>()
    );
    // Training moved the weights and lowered the loss.
    assert_ne!(straight.params(), &Params::init(&c, 5).unwrap());
    assert!(straight_losses[5].loss < straight_losses[0].loss);
}

#[test]
fn steps_is_the_total_so_a_resume_with_more_steps_does_only_the_difference() {
    let dir = tempfile::tempdir().unwrap();
    let mut t = trainer(3);
    let mut n = 0;
    while !t.is_done() {
        t.step().unwrap();
        n += 1;
    }
    assert_eq!(n, 3);
    t.save(dir.path()).unwrap();
    let ckpt = Checkpoint::load(&latest_checkpoint(dir.path()).unwrap().unwrap()).unwrap();
    let c = config();
    let mut resumed = Trainer::resume(
        &ckpt,
        options(6),
        split(),
        Box::new(ReferenceEngine::new(&c)),
    )
    .unwrap();
    let mut more = 0;
    while !resumed.is_done() {
        resumed.step().unwrap();
        more += 1;
    }
    assert_eq!((more, resumed.current_step()), (3, 6));
}

#[test]
fn resuming_with_a_different_batch_shape_is_refused_by_flag_name() {
    let dir = tempfile::tempdir().unwrap();
    let mut t = trainer(1);
    t.step().unwrap();
    t.save(dir.path()).unwrap();
    let ckpt = Checkpoint::load(&latest_checkpoint(dir.path()).unwrap().unwrap()).unwrap();
    let changed = TrainOptions {
        seq: 8,
        ..options(4)
    };
    let c = config();
    let err = Trainer::resume(&ckpt, changed, split(), Box::new(ReferenceEngine::new(&c)))
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("--seq is 8 but the checkpoint used 16"),
        "{err}"
    );
}

#[test]
fn resuming_on_data_of_another_size_is_refused_before_the_order_silently_changes() {
    let dir = tempfile::tempdir().unwrap();
    let mut t = trainer(1);
    t.step().unwrap();
    t.save(dir.path()).unwrap();
    let ckpt = Checkpoint::load(&latest_checkpoint(dir.path()).unwrap().unwrap()).unwrap();
    let c = config();
    let other_split = Split::by_fraction(corpus(), 0.2, 16).unwrap();
    let err = Trainer::resume(&ckpt, options(4), other_split, reference(&c, &ckpt.params))
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("--val-fraction"), "{err}");
}

#[test]
fn accumulating_two_micro_batches_equals_one_batch_of_both() {
    let c = config();
    let run = |batch, accum| {
        let o = TrainOptions {
            steps: 2,
            batch,
            accum,
            seq: 16,
            lr: 0.1,
            warmup: 0,
            clip: 0.0,
            optimizer: OptimizerSpec::Sgd {
                momentum: 0.0,
                weight_decay: 0.0,
            },
            sampling: Sampling::Sequential,
            ..TrainOptions::default()
        };
        let params = Params::init(&c, 1).unwrap();
        let split = Split::by_fraction(corpus(), 0.0, 16).unwrap();
        let mut t = Trainer::new(&c, params, o, split, Box::new(ReferenceEngine::new(&c))).unwrap();
        let losses: Vec<f32> = (0..2).map(|_| t.step().unwrap().loss).collect();
        (losses, t.params().clone())
    };
    let (l_acc, p_acc) = run(2, 2);
    let (l_one, p_one) = run(4, 1);
    for (a, b) in l_acc.iter().zip(&l_one) {
        assert!((a - b).abs() < 1e-5, "{a} vs {b}");
    }
    for ((name, a), (_, b)) in p_acc.iter().into_iter().zip(p_one.iter()) {
        for (x, y) in a.data().iter().zip(b.data()) {
            assert!((x - y).abs() < 1e-6, "{name}: {x} vs {y}");
        }
    }
}

/// The reference engine, except that its `poison`-th pass returns an infinite gradient, as an
/// fp16 overflow on a device would.
struct Overflowing {
    inner: ReferenceEngine,
    calls: usize,
    poison: usize,
}

impl Engine for Overflowing {
    fn describe(&self) -> String {
        "overflowing reference".into()
    }
    fn stage(&mut self, params: &Params) -> Result<()> {
        self.inner.stage(params)
    }
    fn forward_backward(
        &mut self,
        params: &Params,
        batch: &Batch,
        loss_scale: f32,
        grads: &mut Params,
    ) -> Result<PassStats> {
        let stats = self
            .inner
            .forward_backward(params, batch, loss_scale, grads)?;
        self.calls += 1;
        if self.calls == self.poison {
            grads.norm.data_mut()[0] = f32::INFINITY;
        }
        Ok(stats)
    }
    fn loss(&mut self, params: &Params, batch: &Batch) -> Result<PassStats> {
        self.inner.loss(params, batch)
    }
    fn set_adapter(&mut self, adapter: Option<&Adapter>) -> Result<()> {
        self.inner.set_adapter(adapter)
    }
    fn adapter_backward(
        &mut self,
        params: &Params,
        batch: &Batch,
        loss_scale: f32,
        grads: &mut Adapter,
    ) -> Result<PassStats> {
        self.inner
            .adapter_backward(params, batch, loss_scale, grads)
    }
}

#[test]
fn an_overflowing_step_is_skipped_counted_and_halves_the_scale() {
    let c = config();
    let engine = Overflowing {
        inner: ReferenceEngine::new(&c),
        calls: 0,
        // The second micro-batch of step 2.
        poison: 4,
    };
    let params = Params::init(&c, 5).unwrap();
    let mut t = Trainer::new(&c, params, options(3), split(), Box::new(engine)).unwrap();
    let m1 = t.step().unwrap();
    assert!(!m1.skipped);
    let before = t.params().clone();
    let m2 = t.step().unwrap();
    assert!(m2.skipped && m2.grad_norm.is_none());
    assert_eq!((m2.skipped_total, m2.loss_scale), (1, 1024.0));
    assert_eq!(t.params(), &before);
    assert_eq!(t.optimizer().unwrap().updates(), 1);
    let m3 = t.step().unwrap();
    assert!(!m3.skipped);
    assert_eq!((m3.loss_scale, m3.skipped_total), (512.0, 1));
    assert_ne!(t.params(), &before);
}

#[test]
fn a_token_outside_the_vocabulary_is_an_error_naming_its_position() {
    let c = config();
    let mut ids: Vec<u32> = (0..500).map(|i| i % 200).collect();
    ids[377] = 300;
    let data = Split::by_fraction(Arc::new(Tokens::new(ids)), 0.0, 16).unwrap();
    let err = Trainer::new(
        &c,
        Params::init(&c, 1).unwrap(),
        options(1),
        data,
        Box::new(ReferenceEngine::new(&c)),
    )
    .err()
    .unwrap()
    .to_string();
    assert!(err.contains("300") && err.contains("377"), "{err}");
}
