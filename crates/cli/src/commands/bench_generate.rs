//! `anetrain bench generate`: prefill and decode speed of the [`Generator`] that `generate`
//! runs (greedy, KV cache) after prompts of given lengths, and the process's peak memory.
//!
//! Decode speed is decode steps per second: the first token is sampled from the prefill's
//! logits, and each of the other `--tokens − 1` costs one step.
//!
//! Each prompt length gets one untimed run, then `--runs` timed ones; the medians are printed.
//! Greedy decoding of the same prompt must give the same tokens every run, so the benchmark
//! also checks that the runs agree.

use super::device::DeviceArgs;
use super::measure::{median, peak_rss};
use anetrain_data::rng::SplitMix64;
use anetrain_model::generate::{Generator, SamplingOptions};
use anetrain_model::source::ModelSource;
use anyhow::{bail, Result};
use clap::Args;
use std::path::PathBuf;
use std::time::Instant;

#[derive(Args)]
pub struct GenerateBenchArgs {
    /// A preset (random weights), a run directory, a checkpoint, a Hugging Face directory or a
    /// llama2.c .bin.
    #[arg(long, default_value = "stories15M")]
    model: String,
    /// Prompt lengths in tokens, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,200")]
    prompts: Vec<usize>,
    /// Tokens generated after each prompt.
    #[arg(long, default_value_t = 50)]
    tokens: usize,
    /// Timed runs per prompt length (after one untimed run); the medians are reported.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// A LoRA adapter directory (PEFT or mlx-lm), fused into the model before the runs; the
    /// time fusing took is printed.
    #[arg(long)]
    adapter: Option<PathBuf>,
    #[command(flatten)]
    device: DeviceArgs,
    /// Seed of the random weights of a preset and of the prompts' tokens.
    #[arg(long, default_value_t = 42)]
    seed: u64,
}

/// A prompt of `len` tokens: token 1 (BOS in the Llama vocabulary) then seeded random ids.
fn prompt(len: usize, vocab: usize, seed: u64) -> Vec<u32> {
    let mut rng = SplitMix64::new(seed);
    (0..len)
        .map(|i| {
            if i == 0 {
                1.min(vocab as u32 - 1)
            } else {
                rng.below(vocab) as u32
            }
        })
        .collect()
}

/// Runs the benchmark and prints one line per prompt length.
pub fn run(args: &GenerateBenchArgs) -> Result<()> {
    if args.prompts.is_empty() || args.prompts.contains(&0) {
        bail!("--prompts needs lengths of at least 1 token, e.g. --prompts 1,200");
    }
    if args.tokens < 2 || args.runs == 0 {
        bail!("--tokens must be at least 2 (decode speed needs a step after the first token) and --runs at least 1");
    }
    let mut model = ModelSource::parse(&args.model)?.load(args.seed)?;
    let fused = match &args.adapter {
        Some(dir) => {
            let started = Instant::now();
            model.apply_adapter(dir)?;
            Some(started.elapsed().as_secs_f64() * 1e3)
        }
        None => None,
    };
    let (config, params, origin) = (model.config, model.params, model.description);
    let longest = args.prompts.iter().max().copied().unwrap_or(1);
    let max_seq = longest + args.tokens;
    if max_seq > config.max_seq_len {
        bail!(
            "the longest prompt ({longest}) plus --tokens {} is {max_seq} tokens, more than the \
             model's max_seq_len {}; shorten --prompts or --tokens",
            args.tokens,
            config.max_seq_len
        );
    }
    let (device, why) = args.device.device.device()?;
    println!(
        "bench generate: {origin}, greedy with a KV cache, {} tokens after each prompt, median of \
         {} runs, {} threads\ndevice: {why}",
        args.tokens,
        args.runs,
        rayon::current_num_threads()
    );
    if let Some(ms) = fused {
        println!("adapter fused into the weights once, in {ms:.1} ms");
    }
    let mut generator = Generator::new(&config, params, device, max_seq)?;
    let greedy = SamplingOptions {
        temperature: 0.0,
        top_k: 0,
        top_p: 1.0,
        seed: args.seed,
    };
    for &len in &args.prompts {
        let ids = prompt(len, config.vocab_size, args.seed);
        let mut first: Option<Vec<u32>> = None;
        let (mut prefill, mut decode) = (Vec::new(), Vec::new());
        for run in 0..=args.runs {
            let mut out = Vec::with_capacity(args.tokens);
            let mut seen = Vec::with_capacity(args.tokens);
            let stats = generator.generate(&ids, args.tokens, greedy, |t| {
                seen.push(Instant::now());
                out.push(t);
                true
            })?;
            // The first token comes from the prefill's logits; each later one costs one decode
            // step (a cache append through every layer, then sampling).
            let steps = seen.len().saturating_sub(1);
            if steps == 0 {
                bail!(
                    "the generator stopped after {} tokens; nothing was decoded",
                    seen.len()
                );
            }
            let decode_secs = (seen[steps] - seen[0]).as_secs_f64();
            match &first {
                None => first = Some(out),
                Some(f) if *f != out => bail!(
                    "greedy decoding after the {len}-token prompt gave different tokens in run \
                     {run}: the generator is not deterministic (a bug; please report it)"
                ),
                Some(_) => {}
            }
            if run > 0 {
                prefill.push(stats.prefill_ms);
                decode.push(steps as f64 / decode_secs);
            }
        }
        let prefill_ms = median(prefill);
        println!(
            "prompt {len} tokens: prefill {prefill_ms:.3} ms ({:.0} tok/s), decode {:.1} tok/s \
             over {} tokens",
            len as f64 / (prefill_ms / 1e3),
            median(decode),
            first.map_or(0, |f| f.len())
        );
    }
    println!("peak RSS {}", peak_rss());
    Ok(())
}
