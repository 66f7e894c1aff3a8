//! `anetrain bench train`: the speed of the real training step (the [`Trainer`] that `train`
//! runs: forward, loss, backward, unscale, finiteness check, clipping, AdamW, restaging) on a
//! preset with random weights and a new random batch every step, reported against a bare
//! `gemm` call of the model's largest matrix product measured in the same run. With
//! `--lora-rank R`, LoRA training on the frozen model is timed first, beside it.
//!
//! Two FLOP counts per token, both printed:
//! - model: `6·P + 12·L·Q·S`, with `P` the parameters that multiply activations (an untied
//!   embedding table is a lookup, not a product), `L` layers, `Q = heads·head_dim`, `S` the
//!   sequence length: forward 2 and backward 4 FLOPs per weight, plus the score and value
//!   products over the full `S×S` scores the kernels compute.
//! - peer: `6·N + 12·L·Q·S` with `N` every parameter, the formula PyTorch-side MFU estimates
//!   (nanoGPT, PaLM appendix B) use, so figures compare with theirs.

use super::device::DeviceArgs;
use super::measure::{median, peak_rss, peak_rss_mib};
use anetrain_data::rng::SplitMix64;
use anetrain_data::{Sampling, Split, Tokens};
use anetrain_model::config::ModelConfig;
use anetrain_model::device_choice::DeviceChoice;
use anetrain_model::lora::{Adapter, LoraRequest};
use anetrain_model::params::Params;
use anetrain_model::train::base_ref::content_hash;
use anetrain_model::train::{BaseRef, OptimizerSpec, StatePrecision, TrainOptions, Trainer};
use anyhow::{bail, Result};
use clap::Args;
use std::sync::Arc;
use std::time::Instant;

#[derive(Args)]
pub struct TrainBenchArgs {
    /// Model preset (stories15M, stories42M, stories110M, qwen3-0.6b, tiny, ...).
    #[arg(long, default_value = "stories15M")]
    model: String,
    /// Sequences per step.
    #[arg(long, default_value_t = 1)]
    batch: usize,
    /// Tokens per sequence.
    #[arg(long, default_value_t = 256)]
    seq: usize,
    /// Untimed steps first (the first steps fault memory in and warm the caches).
    #[arg(long, default_value_t = 3)]
    warmup: usize,
    /// Timed steps; the median is reported.
    #[arg(long, default_value_t = 5)]
    steps: usize,
    #[command(flatten)]
    device: DeviceArgs,
    /// How AdamW stores its moments (as `train --optimizer-state`): fp32 or bf16.
    #[arg(long, default_value = "fp32", value_name = "fp32|bf16")]
    optimizer_state: String,
    /// Also time the plain-Rust reference engine as a baseline (slow for big models).
    #[arg(long)]
    reference: bool,
    /// Also time LoRA training of this rank on the frozen model, first (so its peak RSS is
    /// its own), and print its step time and peak RSS as shares of full fine-tuning's.
    #[arg(long)]
    lora_rank: Option<usize>,
    /// The projections LoRA adapts (as `train --lora-targets`) [default: q_proj,v_proj].
    #[arg(long, requires = "lora_rank")]
    lora_targets: Option<String>,
    /// Adapt only the top N blocks (as `train --lora-layers`): the backward stops below them.
    #[arg(long, requires = "lora_rank")]
    lora_layers: Option<usize>,
}

/// FLOPs of one training token under both counts (see the module docs).
struct TokenFlops {
    model: f64,
    peer: f64,
}

impl TokenFlops {
    fn new(config: &ModelConfig, seq: usize, params: usize) -> TokenFlops {
        let lookup_only = if config.tied_embeddings {
            0
        } else {
            config.vocab_size * config.dim
        };
        let attention = 12.0 * (config.n_layers * config.q_dim() * seq) as f64;
        TokenFlops {
            model: 6.0 * (params - lookup_only) as f64 + attention,
            peer: 6.0 * params as f64 + attention,
        }
    }
}

/// The model's largest matrix product of one step, `(name, m, k, n)`: the classifier or the
/// FFN projection over all the step's tokens.
fn largest_product(config: &ModelConfig, tokens: usize) -> (&'static str, usize, usize, usize) {
    let d = config.dim;
    [
        ("classifier", tokens, d, config.vocab_size),
        ("FFN projection", tokens, d, config.hidden_dim),
        ("attention projection", tokens, d, config.q_dim()),
    ]
    .into_iter()
    .max_by_key(|&(_, m, k, n)| m * k * n)
    .expect("the list is not empty")
}

/// Median GFLOP/s of `runs` bare row-major `m×k · k×n` products on every thread, after one
/// untimed call.
fn bare_gemm_gflops(m: usize, k: usize, n: usize, runs: usize) -> f64 {
    let a: Vec<f32> = (0..m * k).map(|i| (i % 7) as f32 * 0.125).collect();
    let b: Vec<f32> = (0..k * n).map(|i| (i % 5) as f32 * 0.25).collect();
    let mut c = vec![0f32; m * n];
    let mut samples = Vec::with_capacity(runs);
    for run in 0..=runs {
        let start = Instant::now();
        // SAFETY: row-major m×k, k×n and m×n buffers of exactly those sizes, unit column stride.
        unsafe {
            gemm::gemm(
                m,
                n,
                k,
                c.as_mut_ptr(),
                1,
                n as isize,
                false,
                a.as_ptr(),
                1,
                k as isize,
                b.as_ptr(),
                1,
                n as isize,
                0.0,
                1.0,
                false,
                false,
                false,
                gemm::Parallelism::Rayon(0),
            );
        }
        if run > 0 {
            samples.push(start.elapsed().as_secs_f64());
        }
    }
    2.0 * (m * k * n) as f64 / median(samples) / 1e9
}

/// `len` token ids drawn uniformly from the vocabulary, so every sampled batch is new data.
fn random_tokens(vocab: usize, len: usize, seed: u64) -> Tokens {
    let mut rng = SplitMix64::new(seed);
    Tokens::new((0..len).map(|_| rng.below(vocab) as u32).collect())
}

/// What timing the trainer measured.
struct StepTimes {
    ms: f64,
    /// Peak RSS in MiB once the trainer was built and had staged the weights.
    built_mib: Option<f64>,
    first_loss: f32,
    last_loss: f32,
    description: String,
}

/// Runs `warmup + steps` real training steps on `device`, each on a fresh shuffled batch of
/// random tokens, and returns the median milliseconds of the timed ones.
fn time_trainer(
    config: &ModelConfig,
    params: Params,
    args: &TrainBenchArgs,
    device: DeviceChoice,
    adapter: Option<Adapter>,
) -> Result<StepTimes> {
    let total = args.warmup + args.steps;
    let options = TrainOptions {
        optimizer: optimizer(args)?,
        steps: total as u64,
        batch: args.batch,
        seq: args.seq,
        seed: 1,
        sampling: Sampling::Shuffle { seed: 1 },
        ..TrainOptions::default()
    };
    // One sample of seq + 1 tokens per row per step, so no batch repeats.
    let tokens = random_tokens(config.vocab_size, total * args.batch * args.seq + 1, 7);
    let split = Split {
        train: Arc::new(tokens),
        val: None,
    };
    let (engine, _) = device.engine(config, args.seq, &params)?;
    let mut trainer = match adapter {
        Some(adapter) => {
            let base = BaseRef {
                path: format!("preset {} (random weights)", args.model),
                hash: content_hash(&params),
            };
            Trainer::new_adapter(config, params, base, adapter, options, split, engine)?
        }
        None => Trainer::new(config, params, options, split, engine)?,
    };
    let built_mib = peak_rss_mib();
    let mut samples = Vec::with_capacity(args.steps);
    let (mut first_loss, mut last_loss) = (f32::NAN, f32::NAN);
    for step in 0..total {
        let start = Instant::now();
        let metrics = trainer.step()?;
        let ms = start.elapsed().as_secs_f64() * 1e3;
        if metrics.skipped {
            bail!(
                "step {} overflowed at loss scale {} and was skipped, so it timed no update; \
                 rerun, or use --device cpu",
                metrics.step,
                metrics.loss_scale
            );
        }
        if step == 0 {
            first_loss = metrics.loss;
        }
        last_loss = metrics.loss;
        if step >= args.warmup {
            samples.push(ms);
        }
    }
    Ok(StepTimes {
        ms: median(samples),
        built_mib,
        first_loss,
        last_loss,
        description: trainer.engine_description(),
    })
}

/// The run's AdamW with its moments stored as `--optimizer-state` says.
fn optimizer(args: &TrainBenchArgs) -> Result<OptimizerSpec> {
    let state = StatePrecision::parse(&args.optimizer_state)?;
    Ok(TrainOptions::default().optimizer.with_state(state))
}

/// Runs the benchmark and prints what it measured.
pub fn run(args: &TrainBenchArgs) -> Result<()> {
    if args.batch == 0 || args.seq == 0 || args.steps == 0 {
        bail!("--batch, --seq and --steps must be at least 1");
    }
    let state_bytes = optimizer(args)?.state_bytes_per_param();
    let config = ModelConfig::preset(&args.model)?;
    if args.seq > config.max_seq_len {
        bail!(
            "--seq {} exceeds {}'s max_seq_len {}; pass --seq {} or less",
            args.seq,
            args.model,
            config.max_seq_len,
            config.max_seq_len
        );
    }
    let adapter = LoraRequest {
        rank: args.lora_rank,
        targets: args.lora_targets.clone(),
        layers: args.lora_layers,
        ..LoraRequest::default()
    }
    .resolve(Some(&config), 1)?;
    // LoRA first: peak RSS only grows, so measured before full fine-tuning it is LoRA's own.
    let lora = match adapter {
        Some(adapter) => {
            let described = format!(
                "LoRA rank {} on {} of layers {:?} ({} adapter params)",
                adapter.config().rank,
                adapter.config().targets_list(),
                adapter.config().layer_range(config.n_layers),
                adapter.num_params()
            );
            let params = Params::init(&config, 1)?;
            let timed = time_trainer(&config, params, args, args.device.device, Some(adapter))?;
            let rss = peak_rss_mib();
            println!(
                "{described}, {}: {:.2} ms/step, {:.0} tokens/s, loss {:.4} -> {:.4}, peak RSS {}",
                timed.description,
                timed.ms,
                (args.batch * args.seq) as f64 / (timed.ms / 1e3),
                timed.first_loss,
                timed.last_loss,
                peak_rss()
            );
            Some((timed.ms, rss))
        }
        None => None,
    };
    let params = Params::init(&config, 1)?;
    let n_params = params.num_params();
    let weights_mib = peak_rss_mib();
    let tokens = args.batch * args.seq;
    let flops = TokenFlops::new(&config, args.seq, n_params);
    println!(
        "bench train: {} ({:.1}M params), batch {} x seq {}, {} warm-up + {} timed steps, \
         {} threads",
        args.model,
        n_params as f64 / 1e6,
        args.batch,
        args.seq,
        args.warmup,
        args.steps,
        rayon::current_num_threads()
    );
    println!(
        "step: the train step (forward, loss, backward, unscale, clip, AdamW, restage) on a new \
         random batch each step"
    );
    // Only the trainer's own memory before the peak RSS is read: no spare copy of the weights.
    let timed = time_trainer(&config, params, args, args.device.device, None)?;
    let rss = peak_rss();
    let (name, m, k, n) = largest_product(&config, tokens);
    let gemm = bare_gemm_gflops(m, k, n, 5);
    let secs = timed.ms / 1e3;
    let model_gflops = flops.model * tokens as f64 / secs / 1e9;
    let peer_gflops = flops.peer * tokens as f64 / secs / 1e9;
    println!(
        "{}: {:.2} ms/step, {:.0} tokens/s, loss {:.4} -> {:.4}, peak RSS {rss}",
        timed.description,
        timed.ms,
        tokens as f64 / secs,
        timed.first_loss,
        timed.last_loss
    );
    for (label, per_token, gflops, formula) in [
        ("model", flops.model, model_gflops, "6 x matmul params"),
        ("peer", flops.peer, peer_gflops, "6 x all params"),
    ] {
        println!(
            "{label} FLOPs ({formula} + 12 x layers x q_dim x seq per token): {:.4e}/step, \
             {gflops:.1} GFLOP/s = {:.2}x bare GEMM",
            per_token * tokens as f64,
            gflops / gemm
        );
    }
    println!("bare GEMM ({name} {m}x{k}x{n}, median of 5): {gemm:.1} GFLOP/s");
    if let (Some(weights), Some(built)) = (weights_mib, timed.built_mib) {
        // Zeroed buffers (the gradients) only take memory once written, so the middle figure
        // holds the weights, AdamW's moments and the engine, and the last adds the rest.
        let per_param = 8 + state_bytes;
        println!(
            "memory (peak RSS): {weights:.0} MiB with the weights, {built:.0} MiB once the \
             trainer is built and has staged them, {rss} during the steps; fp32 weights and \
             gradients and {} AdamW moments are {per_param} B/param = {:.0} MiB",
            args.optimizer_state,
            (per_param * n_params as u64) as f64 / 1048576.0
        );
    }
    if let Some((ms, lora_rss)) = lora {
        let rss_share = match (lora_rss, peak_rss_mib()) {
            (Some(l), Some(f)) => format!("{:.0}% ({l:.0} / {f:.0} MiB)", 100.0 * l / f),
            _ => "n/a".into(),
        };
        println!(
            "LoRA / full fine-tuning: step time {:.0}% ({ms:.2} / {:.2} ms), peak RSS {rss_share}",
            100.0 * ms / timed.ms,
            timed.ms
        );
    }
    if args.reference {
        let params = Params::init(&config, 1)?;
        let reference = time_trainer(&config, params, args, DeviceChoice::Reference, None)?;
        println!(
            "{}: {:.1} ms/step ({:.2}x the kernels' time)",
            reference.description,
            reference.ms,
            reference.ms / timed.ms
        );
    }
    Ok(())
}
