//! The trainer fed by fine-tuning examples: a step's loss is the mean over the counted
//! (completion) targets of all its micro-batches, computed here independently from the
//! reference forward's logits; validation is the same mean over the validation examples; and
//! a resumed run continues bit-identically, sampler position included.

use std::sync::Arc;

use anetrain_data::{ByteTokenizer, Example, ExampleEncoder, ExampleSplit, MaskedTokens, Sampling};
use anetrain_model::config::ModelConfig;
use anetrain_model::engine::ReferenceEngine;
use anetrain_model::params::Params;
use anetrain_model::reference;
use anetrain_model::train::checkpoint::latest_checkpoint;
use anetrain_model::train::{Checkpoint, TrainOptions, Trainer};

const SEQ: usize = 16;

fn config() -> ModelConfig {
    let mut c = ModelConfig::preset("tiny").unwrap();
    c.vocab_size = ByteTokenizer::VOCAB_SIZE;
    c.max_seq_len = SEQ;
    c
}

/// Prompt/completion pairs of different lengths, prompts masked.
fn examples(n: usize) -> Vec<MaskedTokens> {
    let raw: Vec<Example> = (0..n)
        .map(|i| Example::Completion {
            prompt: format!("{}+{}=", i % 7, i % 3 + i % 2 * 10),
            completion: format!("{}", i % 7 + i % 3 + i % 2 * 10),
        })
        .collect();
    let tok = ByteTokenizer;
    let enc = ExampleEncoder::new(&tok, None, true).unwrap();
    let (encoded, summary) = enc.encode_all(&raw, SEQ + 1).unwrap();
    assert_eq!(summary.truncated, 0);
    encoded
}

fn split() -> ExampleSplit {
    let all = examples(12);
    ExampleSplit {
        train: Arc::new(all[..9].to_vec()),
        val: Some(Arc::new(all[9..].to_vec())),
    }
}

fn options(steps: u64, sampling: Sampling) -> TrainOptions {
    TrainOptions {
        steps,
        batch: 2,
        seq: SEQ,
        accum: 2,
        lr: 3e-3,
        warmup: 1,
        seed: 5,
        sampling,
        eval_every: 2,
        eval_batches: 0,
        save_every: 2,
        ..TrainOptions::default()
    }
}

fn trainer(steps: u64, sampling: Sampling) -> Trainer {
    let c = config();
    Trainer::new(
        &c,
        Params::init(&c, 5).unwrap(),
        options(steps, sampling),
        split(),
        Box::new(ReferenceEngine::new(&c)),
    )
    .unwrap()
}

/// `Σ CE / n` over the counted targets of `examples`, from the reference forward's logits of
/// each example alone (no padding at all) and a log-sum-exp written here.
fn naive_mean_loss(params: &Params, examples: &[MaskedTokens]) -> f64 {
    let c = config();
    let (mut sum, mut n) = (0.0f64, 0usize);
    for e in examples {
        let inputs = e.tokens[..e.tokens.len() - 1].to_vec();
        let logits = reference::forward(&c, params, &[inputs]).unwrap();
        for p in 1..e.tokens.len() {
            if !e.counts[p] {
                continue;
            }
            let row = logits.at(0, p - 1);
            let max = row.iter().fold(f32::MIN, |m, &x| m.max(x)) as f64;
            let lse = max
                + row
                    .iter()
                    .map(|&x| (x as f64 - max).exp())
                    .sum::<f64>()
                    .ln();
            sum += lse - row[e.tokens[p] as usize] as f64;
            n += 1;
        }
    }
    sum / n as f64
}

#[test]
fn a_step_loss_is_the_mean_over_the_counted_targets_of_all_micro_batches() {
    let mut t = trainer(1, Sampling::Sequential);
    let before = t.params().clone();
    let m = t.step().unwrap();
    // Sequential sampling: the step saw training examples 0..4 in two micro-batches of 2.
    let want = naive_mean_loss(&before, &split().train[..4]);
    assert!((m.loss as f64 - want).abs() < 1e-5, "{} vs {want}", m.loss);
    let counted: usize = split().train[..4].iter().map(MaskedTokens::counted).sum();
    assert_eq!(m.tokens, counted as u64);

    let val = t.evaluate().unwrap().unwrap();
    let want = naive_mean_loss(t.params(), split().val.as_ref().unwrap());
    assert!(
        (val.loss as f64 - want).abs() < 1e-5,
        "{} vs {want}",
        val.loss
    );
}

#[test]
fn a_resumed_example_run_is_bit_identical_to_a_straight_one() {
    let sampling = Sampling::Shuffle { seed: 9 };
    let mut straight = trainer(6, sampling);
    let mut want = Vec::new();
    while !straight.is_done() {
        want.push(straight.step().unwrap());
    }
    let dir = tempfile::tempdir().unwrap();
    let mut first = trainer(6, sampling);
    let mut got = Vec::new();
    for _ in 0..3 {
        got.push(first.step().unwrap());
    }
    first.save(dir.path()).unwrap();
    drop(first);
    let ckpt = Checkpoint::load(&latest_checkpoint(dir.path()).unwrap().unwrap()).unwrap();
    let c = config();
    let mut resumed = Trainer::resume(
        &ckpt,
        options(6, sampling),
        split(),
        Box::new(ReferenceEngine::new(&c)),
    )
    .unwrap();
    while !resumed.is_done() {
        got.push(resumed.step().unwrap());
    }
    assert_eq!(resumed.params(), straight.params());
    let key = |m: &anetrain_model::train::StepMetrics| (m.step, m.loss, m.tokens, m.val_loss);
    assert_eq!(
        got.iter().map(key).collect::<Vec<_>>(),
        want.iter().map(key).collect::<Vec<_>>()
    );
    // Other examples than the run's are refused rather than silently continued.
    let other = ExampleSplit {
        train: Arc::new(examples(20)),
        val: None,
    };
    let err = Trainer::resume(
        &ckpt,
        options(6, sampling),
        other,
        Box::new(ReferenceEngine::new(&c)),
    )
    .err()
    .unwrap()
    .to_string();
    assert!(err.contains("original --data"), "{err}");
}
