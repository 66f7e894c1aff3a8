//! `anetrain generate`: text from a model, streamed as it is sampled: the prompt through the
//! tokenizer, a prefill, then one KV-cache decode step per token on the chosen device. With
//! `--chat` the message is put through the model's chat template and only the reply is printed.

use super::chat::{talk, TalkArgs};
use super::device::{CapabilityArgs, DeviceArgs};
use super::sampling::SamplingArgs;
use crate::sample::{stream_generation, stream_ids};
use anetrain_data::TokenizerSource;
use anetrain_model::generate::{encode_prompt, generator_for};
use anetrain_model::source::{LoadedModel, ModelSource, ModelTokenizer};
use anyhow::{bail, Context, Result};
use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args)]
pub struct GenerateArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// The text to continue (BOS is added when the tokenizer has one).
    #[arg(long, default_value = "", conflicts_with_all = ["prompt_ids", "chat"])]
    prompt: String,
    /// The prompt as token ids (`1,72,105`), for models without a tokenizer; the completion
    /// is then printed as ids too unless a tokenizer is known.
    #[arg(long, value_delimiter = ',', num_args = 1.., conflicts_with = "chat")]
    prompt_ids: Option<Vec<u32>>,
    /// A user message: rendered with the model's chat template (or the plain format) and
    /// answered; only the reply is printed (one turn of `anetrain chat`).
    #[arg(long)]
    chat: Option<String>,
    #[command(flatten)]
    talk: TalkArgs,
    #[command(flatten)]
    sampling: SamplingArgs,
    #[command(flatten)]
    device: DeviceArgs,
    #[command(flatten)]
    capabilities: CapabilityArgs,
}

/// The model `generate` and `chat` run: a path or preset, its tokenizer and an adapter.
#[derive(Args)]
pub struct ModelArgs {
    /// A run directory (its latest checkpoint), a checkpoint, a Hugging Face directory, a
    /// llama2.c .bin, or a preset name (random weights, for trying the pipeline).
    #[arg(long)]
    model: String,
    /// `byte`, a tokenizer.json, or a directory holding one [default: the model's own
    /// tokenizer]; a chat's template is the `chat_template.jinja` or `tokenizer_config.json`
    /// beside it.
    #[arg(long)]
    tokenizer: Option<String>,
    /// A LoRA adapter directory (PEFT or mlx-lm) to fold into the model first.
    #[arg(long)]
    adapter: Option<PathBuf>,
}

impl ModelArgs {
    /// Loads `--model` (a preset takes the `--tokenizer`'s vocabulary), folds in `--adapter`,
    /// and picks the tokenizer.
    pub fn load(&self, seed: u64) -> Result<(LoadedModel, Option<ModelTokenizer>)> {
        let flag = self
            .tokenizer
            .as_deref()
            .map(TokenizerSource::parse)
            .transpose()?;
        let mut source = ModelSource::parse(&self.model)?;
        if let Some(flag) = &flag {
            source = source.with_preset_vocab(flag.open()?.vocab_size());
        }
        let mut model = source.load(seed)?;
        if let Some(dir) = &self.adapter {
            model.apply_adapter(dir)?;
        }
        let tokenizer = model.tokenizer(flag.as_ref())?;
        Ok((model, tokenizer))
    }
}

/// Runs `anetrain generate`.
pub fn run(args: GenerateArgs) -> Result<ExitCode> {
    let options = args.sampling.options()?;
    if args.chat.is_none() {
        args.talk.refuse_without_chat()?;
    }
    let (model, tokenizer) = args.model.load(args.sampling.seed)?;
    if let Some(message) = &args.chat {
        return talk(
            model,
            tokenizer,
            &args.talk,
            &args.sampling,
            args.device,
            args.capabilities.path(),
            [Ok(message.clone())],
        );
    }
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
    let (device, why) = args.device.device.device_with(args.capabilities.path())?;
    eprintln!(
        "model: {}
device: {why}",
        model.description
    );
    let text_tokenizer = tokenizer.as_ref().map(|t| t.tokenizer.as_ref());
    let max_tokens = args.sampling.max_tokens;
    let mut generator = generator_for(
        &config,
        model.params,
        device,
        text_tokenizer,
        &prompt,
        max_tokens,
    )?;
    let stats = match &tokenizer {
        Some(t) => stream_generation(
            &mut generator,
            t.tokenizer.as_ref(),
            &prompt,
            max_tokens,
            options,
        )
        .map(|(stats, _)| stats),
        None => stream_ids(&mut generator, &prompt, max_tokens, options),
    }
    .context("generating")?;
    eprintln!(
        "{} tokens, {:.1} tok/s (prefill {:.0} ms)",
        stats.generated_tokens, stats.decode_tokens_per_s, stats.prefill_ms
    );
    Ok(ExitCode::SUCCESS)
}
