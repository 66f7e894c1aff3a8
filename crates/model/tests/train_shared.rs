//! Training on the real shared data (/work/shared/data): a tiny model on pretokenized
//! Shakespeare with the Llama 2 vocabulary learns within 20 steps. Skipped, with the reason
//! printed, when the data is absent.

use std::path::Path;
use std::sync::Arc;

use anetrain_data::{load_tokenizer, Sampling, ShardSet, Split};
use anetrain_model::config::ModelConfig;
use anetrain_model::engine::ReferenceEngine;
use anetrain_model::params::Params;
use anetrain_model::train::{TrainOptions, Trainer};

const DATA: &str = "/work/shared/data";

#[test]
fn shared_shakespeare_loss_falls_in_twenty_steps() {
    let dir = Path::new(DATA);
    let train_bin = dir.join("shakespeare_train.bin");
    let val_bin = dir.join("shakespeare_val.bin");
    let tokenizer = dir.join("llama2-tokenizer.json");
    if !(train_bin.is_file() && val_bin.is_file() && tokenizer.is_file()) {
        eprintln!("skipped: {DATA} lacks shakespeare_{{train,val}}.bin or llama2-tokenizer.json");
        return;
    }
    let vocab = load_tokenizer(tokenizer.to_str().unwrap())
        .unwrap()
        .vocab_size();
    let mut config = ModelConfig::preset("tiny").unwrap();
    config.vocab_size = vocab;
    config.tied_embeddings = true;
    let split = Split::separate(
        Arc::new(ShardSet::open(&train_bin).unwrap()),
        Arc::new(ShardSet::open(&val_bin).unwrap()),
    );
    let options = TrainOptions {
        steps: 20,
        batch: 4,
        seq: 32,
        lr: 3e-3,
        warmup: 2,
        sampling: Sampling::Shuffle { seed: 1 },
        eval_batches: 4,
        ..TrainOptions::default()
    };
    let params = Params::init(&config, 1).unwrap();
    let engine = Box::new(ReferenceEngine::new(&config));
    let mut t = Trainer::new(&config, params, options, split, engine).unwrap();
    let before = t.evaluate().unwrap().unwrap().loss;
    let losses: Vec<f32> = (0..20).map(|_| t.step().unwrap().loss).collect();
    let after = t.evaluate().unwrap().unwrap().loss;
    let head: f32 = losses[..3].iter().sum::<f32>() / 3.0;
    let tail: f32 = losses[17..].iter().sum::<f32>() / 3.0;
    assert!(tail < head - 0.5, "training loss {head} -> {tail}");
    assert!(after < before - 0.5, "validation loss {before} -> {after}");
    // An untrained model is near uniform over the vocabulary.
    assert!((before - (vocab as f32).ln()).abs() < 0.5, "{before}");
}
