//! `anetrain generate`: text from a model, streamed as it is sampled: the prompt through the
//! tokenizer, a prefill, then one KV-cache decode step per token on the chosen device.

use super::device::DeviceArgs;
use crate::sample::{stream_generation, stream_ids};
use anetrain_data::TokenizerSource;
use anetrain_model::generate::{encode_prompt, generator_for, SamplingOptions};
use anetrain_model::source::ModelSource;
use anyhow::{bail, Context, Result};
use clap::Args;
use std::process::ExitCode;

#[derive(Args)]
pub struct GenerateArgs {
    /// A run directory (its latest checkpoint), a checkpoint, a Hugging Face directory, a
    /// llama2.c .bin, or a preset name (random weights, for trying the pipeline).
    #[arg(long)]
    model: String,
    /// `byte`, a tokenizer.json, or a directory holding one [default: the model's own
    /// tokenizer].
    #[arg(long)]
    tokenizer: Option<String>,
    /// The text to continue (BOS is added when the tokenizer has one).
    #[arg(long, default_value = "", conflicts_with = "prompt_ids")]
    prompt: String,
    /// The prompt as token ids (`1,72,105`), for models without a tokenizer; the completion
    /// is then printed as ids too unless a tokenizer is known.
    #[arg(long, value_delimiter = ',', num_args = 1..)]
    prompt_ids: Option<Vec<u32>>,
    /// Most tokens to generate; generation also stops at EOS or the model's max_seq_len.
    #[arg(long, default_value_t = 256)]
    max_tokens: usize,
    /// Softmax temperature; 0 is greedy.
    #[arg(long, default_value_t = 0.8)]
    temperature: f32,
    /// Sample only from the K most likely tokens; 0 is off.
    #[arg(long, default_value_t = 0)]
    top_k: usize,
    /// Sample only from the most likely tokens whose mass reaches P; 1 is off.
    #[arg(long, default_value_t = 0.95)]
    top_p: f32,
    /// Seed of the sampler (and of the random weights of a preset); the same seed gives the
    /// same text.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    #[command(flatten)]
    device: DeviceArgs,
}

/// Runs `anetrain generate`.
pub fn run(args: GenerateArgs) -> Result<ExitCode> {
    let options = SamplingOptions {
        temperature: args.temperature,
        top_k: args.top_k,
        top_p: args.top_p,
        seed: args.seed,
    };
    options.validate()?;
    let flag = args
        .tokenizer
        .as_deref()
        .map(TokenizerSource::parse)
        .transpose()?;
    let mut source = ModelSource::parse(&args.model)?;
    if let Some(flag) = &flag {
        source = source.with_preset_vocab(flag.open()?.vocab_size());
    }
    let model = source.load(args.seed)?;
    let tokenizer = model.tokenizer(flag.as_ref())?;
    let prompt = match (&args.prompt_ids, &tokenizer) {
        (Some(ids), _) => ids.clone(),
        (None, Some(t)) => encode_prompt(t.tokenizer.as_ref(), &args.prompt)?,
        (None, None) => bail!(
            "{} carries no tokenizer; pass --tokenizer (a tokenizer.json, or byte), or give the \
             prompt as token ids with --prompt-ids",
            model.description
        ),
    };
    let config = model.config.clone();
    let (device, why) = args.device.device.device()?;
    eprintln!("model: {}\ndevice: {why}", model.description);
    let text_tokenizer = tokenizer.as_ref().map(|t| t.tokenizer.as_ref());
    let mut generator = generator_for(
        &config,
        model.params,
        device,
        text_tokenizer,
        &prompt,
        args.max_tokens,
    )?;
    let stats = match &tokenizer {
        Some(t) => stream_generation(
            &mut generator,
            t.tokenizer.as_ref(),
            &prompt,
            args.max_tokens,
            options,
        )
        .map(|(stats, _)| stats),
        None => stream_ids(&mut generator, &prompt, args.max_tokens, options),
    }
    .context("generating")?;
    eprintln!(
        "{} tokens, {:.1} tok/s (prefill {:.0} ms)",
        stats.generated_tokens, stats.decode_tokens_per_s, stats.prefill_ms
    );
    Ok(ExitCode::SUCCESS)
}
