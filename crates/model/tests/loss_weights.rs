//! Per-target loss weights (the fine-tuning loss mask) through both engines: the device engine
//! agrees with the reference engine on random masks, positions that are masked through to the
//! end of a row cost nothing whatever their tokens, the device gradient of the weighted loss
//! agrees with finite differences of its own weighted loss, and micro-batches weighted by their
//! counted targets add up to the one batch holding them all.

mod common;
use common::{check_finite_differences, rel_err};

use anetrain_data::Batch;
use anetrain_device::{CpuDevice, Precision};
use anetrain_model::config::ModelConfig;
use anetrain_model::engine::{DeviceEngine, Engine, ReferenceEngine};
use anetrain_model::params::Params;

const SEQ: usize = 16;

fn tokens(c: &ModelConfig, batch: usize, seed: u32) -> Vec<Vec<u32>> {
    (0..batch as u32)
        .map(|b| {
            (0..=SEQ as u32)
                .map(|t| (t * 31 + b * 97 + seed * 17 + t * t * 5) % c.vocab_size as u32)
                .collect()
        })
        .collect()
}

/// A pseudo-random 0/1 mask per row, each row counting at least one target.
fn random_mask(batch: usize, seed: u64) -> Vec<Vec<f32>> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..batch)
        .map(|_| {
            let mut row: Vec<f32> = (0..SEQ)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x.is_multiple_of(3) as u8 as f32
                })
                .collect();
            row[SEQ / 2] = 1.0;
            row
        })
        .collect()
}

fn engine(c: &ModelConfig, p: &Params) -> DeviceEngine {
    DeviceEngine::new(c, Box::new(CpuDevice::new(Precision::F32)), SEQ, p).unwrap()
}

fn configs() -> Vec<ModelConfig> {
    let mut untied = ModelConfig::preset("tiny-gqa").unwrap();
    untied.tied_embeddings = false;
    vec![
        ModelConfig::preset("tiny").unwrap(),
        untied,
        ModelConfig::preset("tiny-qwen3").unwrap(),
    ]
}

#[test]
fn masked_step_matches_the_reference_engine() {
    for (i, c) in configs().into_iter().enumerate() {
        let p = Params::init(&c, 3 + i as u64).unwrap();
        let mut mask = random_mask(3, 11 + i as u64);
        // A row that counts nothing adds nothing (the device engine skips it).
        mask[1].fill(0.0);
        let batch = Batch::from_rows(&tokens(&c, 3, i as u32), Some(&mask)).unwrap();
        let counted: usize = mask.iter().flatten().filter(|&&w| w == 1.0).count();
        let mut want = Params::zeros(&c);
        let r = ReferenceEngine::new(&c)
            .forward_backward(&p, &batch, 8.0, &mut want)
            .unwrap();
        let mut got = Params::zeros(&c);
        let mut dev = engine(&c, &p);
        let d = dev.forward_backward(&p, &batch, 8.0, &mut got).unwrap();
        assert_eq!((r.tokens, d.tokens), (counted, counted));
        assert!(
            (d.loss - r.loss).abs() / r.loss < 1e-5,
            "{} vs {}",
            d.loss,
            r.loss
        );
        for ((name, a), (_, b)) in got.iter().into_iter().zip(want.iter()) {
            let e = rel_err(a.data(), b.data());
            assert!(e <= 1e-4, "{c:?} {name}: relative error {e}");
        }
        let eval = dev.loss(&p, &batch).unwrap();
        assert!((eval.loss - r.loss).abs() / r.loss < 1e-5);
        assert_eq!(eval.tokens, counted);
    }
}

#[test]
fn tokens_masked_through_to_the_end_of_a_row_change_nothing() {
    let c = ModelConfig::preset("tiny-qwen3").unwrap();
    let p = Params::init(&c, 8).unwrap();
    // Targets 0..10 count; 10.. are padding. Tokens 11.. are then only inputs of masked
    // positions and targets of masked positions.
    let mask: Vec<Vec<f32>> = (0..2)
        .map(|_| (0..SEQ).map(|t| (t < 10) as u8 as f32).collect())
        .collect();
    let rows = tokens(&c, 2, 4);
    let mut changed = rows.clone();
    for row in &mut changed {
        for t in &mut row[11..] {
            *t = (*t * 7 + 3) % c.vocab_size as u32;
        }
    }
    assert_ne!(rows, changed);
    let a = Batch::from_rows(&rows, Some(&mask)).unwrap();
    let b = Batch::from_rows(&changed, Some(&mask)).unwrap();
    let engines: [Box<dyn Engine>; 2] =
        [Box::new(ReferenceEngine::new(&c)), Box::new(engine(&c, &p))];
    for mut e in engines {
        let (mut ga, mut gb) = (Params::zeros(&c), Params::zeros(&c));
        let la = e.forward_backward(&p, &a, 1.0, &mut ga).unwrap();
        let lb = e.forward_backward(&p, &b, 1.0, &mut gb).unwrap();
        assert_eq!(la, lb, "{}", e.describe());
        for ((name, x), (_, y)) in ga.iter().into_iter().zip(gb.iter()) {
            assert!(
                rel_err(x.data(), y.data()) < 1e-6,
                "{}: {name} depends on padding",
                e.describe()
            );
        }
        // Without the mask the same change does change the loss: the check is not vacuous.
        let plain_a = Batch::from_rows(&rows, None).unwrap();
        let plain_b = Batch::from_rows(&changed, None).unwrap();
        assert_ne!(e.loss(&p, &plain_a).unwrap(), e.loss(&p, &plain_b).unwrap());
    }
}

#[test]
fn device_gradient_of_the_weighted_loss_matches_finite_differences() {
    let c = ModelConfig::preset("tiny-gqa").unwrap();
    let mut p = Params::init(&c, 21).unwrap();
    let batch = Batch::from_rows(&tokens(&c, 2, 3), Some(&random_mask(2, 5))).unwrap();
    let mut dev = engine(&c, &p);
    let names = [
        "model.embed_tokens.weight",
        "model.layers.0.self_attn.v_proj.weight",
        "model.layers.1.mlp.gate_proj.weight",
        "model.norm.weight",
    ];
    check_finite_differences(&mut dev, &c, &mut p, &batch, &names);
}

#[test]
fn micro_batches_weighted_by_counted_targets_equal_the_whole_batch() {
    let c = ModelConfig::preset("tiny").unwrap();
    let p = Params::init(&c, 2).unwrap();
    let rows = tokens(&c, 3, 9);
    let mut mask = random_mask(3, 7);
    mask[2][..12].fill(0.0);
    let whole = Batch::from_rows(&rows, Some(&mask)).unwrap();
    let first = Batch::from_rows(&rows[..2], Some(&mask[..2])).unwrap();
    let second = Batch::from_rows(&rows[2..], Some(&mask[2..])).unwrap();
    let n = whole.counted_targets() as f32;
    assert_ne!(first.counted_targets(), 2 * second.counted_targets());
    for mut e in [
        Box::new(ReferenceEngine::new(&c)) as Box<dyn Engine>,
        Box::new(engine(&c, &p)),
    ] {
        let mut want = Params::zeros(&c);
        let all = e.forward_backward(&p, &whole, 1.0, &mut want).unwrap();
        let mut got = Params::zeros(&c);
        let mut loss = 0.0;
        for part in [&first, &second] {
            let share = part.counted_targets() as f32 / n;
            let s = e.forward_backward(&p, part, share, &mut got).unwrap();
            loss += s.loss * s.tokens as f32 / n;
        }
        assert!((loss - all.loss).abs() < 1e-5, "{loss} vs {}", all.loss);
        for ((name, a), (_, b)) in got.iter().into_iter().zip(want.iter()) {
            assert!(
                rel_err(a.data(), b.data()) < 1e-5,
                "{}: {name}",
                e.describe()
            );
        }
    }
}
