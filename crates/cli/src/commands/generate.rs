//! `anetrain generate`: text from a model, streamed as it is sampled: the prompt through the
//! tokenizer, a prefill, then one KV-cache decode step per token on the chosen device.

use super::device::select_device;
use super::import::load_weights;
use anetrain_data::{load_tokenizer, StreamDecoder, Tokenizer};
use anetrain_model::config::ModelConfig;
use anetrain_model::generate::{GenerationStats, Generator, SamplingOptions};
use anetrain_model::params::Params;
use anyhow::{bail, Context, Result};
use clap::Args;
use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

#[derive(Args)]
pub struct GenerateArgs {
    /// A run directory (its latest checkpoint), a checkpoint, a Hugging Face directory, a
    /// llama2.c .bin, or a preset name (random weights, for trying the pipeline).
    #[arg(long)]
    model: String,
    /// `byte` or a tokenizer.json path [default: the model directory's tokenizer.json if it
    /// has one, else byte].
    #[arg(long)]
    tokenizer: Option<String>,
    /// The text to continue (BOS is added when the tokenizer has one).
    #[arg(long, default_value = "")]
    prompt: String,
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
    /// Where the kernels run: auto, cpu, cpu-f16 or ane.
    #[arg(long, default_value = "auto")]
    device: String,
}

/// Weights from disk, or seeded random weights when `--model` names a preset (its vocabulary
/// is then sized to `vocab`, the tokenizer's, since random weights fit any tokenizer).
fn load_model(spec: &str, seed: u64, vocab: usize) -> Result<(ModelConfig, Params, String)> {
    let path = Path::new(spec);
    if !path.exists() {
        if let Ok(mut config) = ModelConfig::preset(spec) {
            config.vocab_size = vocab;
            let params = Params::init(&config, seed)?;
            return Ok((config, params, format!("preset {spec} (random weights)")));
        }
    }
    load_weights(path)
}

/// The `--tokenizer` to use: the flag, else the model directory's tokenizer.json, else bytes.
fn choose_tokenizer(flag: Option<&str>, model: &str) -> Result<Box<dyn Tokenizer>> {
    let beside = Path::new(model).join("tokenizer.json");
    let spec = match flag {
        Some(s) => s.to_string(),
        None if beside.is_file() => beside.display().to_string(),
        None => "byte".to_string(),
    };
    load_tokenizer(&spec).with_context(|| format!("loading tokenizer `{spec}`"))
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
    let tokenizer = choose_tokenizer(args.tokenizer.as_deref(), &args.model)?;
    let (config, params, origin) = load_model(&args.model, args.seed, tokenizer.vocab_size())?;
    if tokenizer.vocab_size() > config.vocab_size {
        bail!(
            "the tokenizer has {} tokens but the model only {}; pass the --tokenizer the model was trained with",
            tokenizer.vocab_size(),
            config.vocab_size
        );
    }
    let mut prompt = Vec::new();
    prompt.extend(tokenizer.bos());
    prompt.extend(tokenizer.encode(&args.prompt)?);
    if prompt.is_empty() {
        bail!("the prompt is empty and the tokenizer has no BOS token; pass --prompt TEXT");
    }
    if prompt.len() > config.max_seq_len {
        bail!(
            "the prompt is {} tokens but the model holds at most {} (max_seq_len); shorten --prompt",
            prompt.len(),
            config.max_seq_len
        );
    }
    // Only as long a cache as this run can fill: a shorter cache makes every step cheaper.
    let max_seq = config.max_seq_len.min(prompt.len() + args.max_tokens);
    let (device, why) = select_device(&args.device)?;
    eprintln!("model: {origin}\ndevice: {why}");
    let mut generator = Generator::new(&config, params, device, max_seq)?;
    generator.set_eos(tokenizer.eos());

    print!("{}", args.prompt);
    let (stats, _) = stream_generation(
        &mut generator,
        tokenizer.as_ref(),
        &prompt,
        args.max_tokens,
        options,
    )?;
    eprintln!(
        "{} tokens, {:.1} tok/s (prefill {:.0} ms)",
        stats.generated_tokens, stats.decode_tokens_per_s, stats.prefill_ms
    );
    Ok(ExitCode::SUCCESS)
}

/// Generates after `prompt`, printing the text to stdout as each token completes a character;
/// returns the statistics and the text printed.
pub fn stream_generation(
    generator: &mut Generator,
    tokenizer: &dyn Tokenizer,
    prompt: &[u32],
    max_tokens: usize,
    options: SamplingOptions,
) -> Result<(GenerationStats, String)> {
    let mut out = std::io::stdout().lock();
    let mut printed = String::new();
    out.flush()?;
    let mut decoder = StreamDecoder::new(tokenizer);
    let mut failure: Option<anyhow::Error> = None;
    let stats = generator.generate(prompt, max_tokens, options, |id| {
        let shown = decoder
            .push(id)
            .map_err(anyhow::Error::from)
            .and_then(|text| {
                if let Some(text) = text {
                    write!(out, "{text}")?;
                    out.flush()?;
                    printed.push_str(&text);
                }
                Ok(())
            });
        match shown {
            Ok(()) => true,
            Err(e) => {
                failure = Some(e.context(format!("showing token {id}")));
                false
            }
        }
    })?;
    if let Some(e) = failure {
        return Err(e);
    }
    let rest = decoder.finish()?;
    writeln!(out, "{rest}")?;
    printed.push_str(&rest);
    Ok((stats, printed))
}
