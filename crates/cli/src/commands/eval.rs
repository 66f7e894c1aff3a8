//! `anetrain eval`: the mean loss and perplexity of a model over every sample of a dataset, or
//! over the counted tokens of every fine-tuning example of a .jsonl file.

use super::device::{CapabilityArgs, DeviceArgs};
use anetrain_data::{DataRequest, DataSource, TextOptions, TokenizerSource};
use anetrain_model::source::ModelSource;
use anetrain_model::train::evaluate;
use anyhow::{bail, Context, Result};
use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args)]
pub struct EvalArgs {
    /// A run directory (its latest checkpoint), a checkpoint, a Hugging Face directory, a
    /// llama2.c .bin, or a preset name (random weights).
    #[arg(long)]
    model: String,
    /// The data to evaluate on (`synthetic[:TOKENS]`, .bin shards, a text file, or a .jsonl
    /// file of fine-tuning examples, rendered with the model's chat template).
    #[arg(long)]
    data: String,
    /// Fine-tuning examples: only completion / assistant tokens count in the loss.
    #[arg(long)]
    mask_prompt: bool,
    /// `byte`, a tokenizer.json, or a directory holding one [default: the model's own
    /// tokenizer; .bin shards need none].
    #[arg(long)]
    tokenizer: Option<String>,
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
    /// A LoRA adapter directory (PEFT or mlx-lm) to fold into the model first.
    #[arg(long)]
    adapter: Option<PathBuf>,
    #[command(flatten)]
    device: DeviceArgs,
    #[command(flatten)]
    capabilities: CapabilityArgs,
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
    if args.batch == 0 {
        bail!("--batch 0 evaluates nothing; pass --batch 1 or more");
    }
    let flag = args
        .tokenizer
        .as_deref()
        .map(TokenizerSource::parse)
        .transpose()?;
    // A bad spelling fails before the model loads.
    DataSource::parse(&args.data)?;
    let mut model = ModelSource::parse(&args.model)?.load(args.seed)?;
    if let Some(dir) = &args.adapter {
        model.apply_adapter(dir)?;
    }
    let config = &model.config;
    let seq = args.seq.unwrap_or(config.max_seq_len.min(256));
    if seq == 0 || seq > config.max_seq_len {
        bail!(
            "--seq {seq} is outside 1..={} (the model's max_seq_len); pass --seq {} or less",
            config.max_seq_len,
            config.max_seq_len
        );
    }
    let tokenizer = model.tokenizer(flag.as_ref())?;
    let (mut batches, truncation) = DataRequest {
        data: &args.data,
        val_data: None,
        val_fraction: 0.0,
        mask_prompt: args.mask_prompt,
        seq,
        seed: args.seed,
        tokenizer: tokenizer
            .as_ref()
            .map(|t| (t.tokenizer.as_ref(), &t.source)),
        text: &TextOptions::default(),
    }
    .open_eval(args.batch, config.vocab_size)
    .with_context(|| format!("--data {}", args.data))?;
    if let Some(line) = truncation {
        // --json keeps stdout one JSON object.
        if args.json {
            eprintln!("{line}");
        } else {
            println!("{line}");
        }
    }
    let (mut engine, why) =
        args.device
            .device
            .engine_with(config, seq, &model.params, args.capabilities.path())?;
    let result = evaluate(engine.as_mut(), &model.params, batches.as_mut(), 0)?;
    if args.json {
        println!("{}", serde_json::to_string(&result)?);
    } else {
        println!("model: {}\ndevice: {why}", model.description);
        if let Some(t) = &tokenizer {
            println!("tokenizer: {}", t.source.spec());
        }
        println!(
            "loss {:.4}  perplexity {:.3}  over {} tokens",
            result.loss, result.perplexity, result.tokens
        );
    }
    Ok(ExitCode::SUCCESS)
}
