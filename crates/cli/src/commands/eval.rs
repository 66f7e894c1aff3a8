//! `anetrain eval`: the mean loss and perplexity of a model over every sample of a dataset.

use super::import::load_weights;
use super::train::make_engine;
use anetrain_data::{load_tokenizer, validate_vocab, DataSource};
use anetrain_model::train::evaluate;
use anyhow::{bail, Context, Result};
use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args)]
pub struct EvalArgs {
    /// A run directory (its latest checkpoint), a checkpoint, a Hugging Face directory or a
    /// llama2.c .bin.
    #[arg(long)]
    model: PathBuf,
    /// The data to evaluate on (`synthetic[:TOKENS]`, .bin shards or a text file).
    #[arg(long)]
    data: String,
    /// `byte` or a tokenizer.json path (needed for text and synthetic data).
    #[arg(long, default_value = "byte")]
    tokenizer: String,
    /// Tokens per sample [default: the model's max_seq_len, at most 256].
    #[arg(long)]
    seq: Option<usize>,
    /// Samples per batch.
    #[arg(long, default_value_t = 8)]
    batch: usize,
    /// Evaluation visits every sample in order; only `sequential` is accepted, for symmetry
    /// with `train`.
    #[arg(long, default_value = "sequential")]
    sampling: String,
    /// auto, cpu, cpu-f16, ane or reference.
    #[arg(long, default_value = "auto")]
    device: String,
    /// Seed of the synthetic corpus when --data is synthetic.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

/// Runs `anetrain eval`.
pub fn run(args: EvalArgs) -> Result<ExitCode> {
    if args.sampling != "sequential" {
        bail!(
            "--sampling {} does not apply: evaluation covers every sample exactly once; drop the flag",
            args.sampling
        );
    }
    let (config, params, origin) = load_weights(&args.model)?;
    let seq = args.seq.unwrap_or(config.max_seq_len.min(256));
    if seq > config.max_seq_len {
        bail!(
            "--seq {seq} is longer than the model's max_seq_len {}; pass --seq {} or less",
            config.max_seq_len,
            config.max_seq_len
        );
    }
    let tokenizer = load_tokenizer(&args.tokenizer)?;
    let stream = DataSource::parse(&args.data)?
        .open(tokenizer.as_ref(), args.seed)
        .with_context(|| format!("opening --data {}", args.data))?;
    validate_vocab(stream.as_ref(), config.vocab_size)?;
    let (mut engine, why) = make_engine(&config, &args.device, seq)?;
    let result = evaluate(engine.as_mut(), &params, stream, seq, args.batch, 0)?;
    if args.json {
        println!("{}", serde_json::to_string(&result)?);
    } else {
        println!("model: {origin}\ndevice: {why}");
        println!(
            "loss {:.4}  perplexity {:.3}  over {} tokens",
            result.loss, result.perplexity, result.tokens
        );
    }
    Ok(ExitCode::SUCCESS)
}
