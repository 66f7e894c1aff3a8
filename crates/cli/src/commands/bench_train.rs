//! `anetrain bench train`: the speed of one full training step (forward, backward, AdamW,
//! restaging) for a preset, reported next to baselines measured in the same run.

use super::device::DeviceArgs;
use anetrain_model::config::ModelConfig;
use anetrain_model::engine::{Engine, ReferenceEngine};
use anetrain_model::params::Params;
use anetrain_model::train::{Optimizer, OptimizerSpec};
use anyhow::{bail, Result};
use clap::Args;
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
    /// Timed steps after one warm-up step.
    #[arg(long, default_value_t = 5)]
    steps: usize,
    #[command(flatten)]
    device: DeviceArgs,
    /// Also time the plain-Rust reference engine as a baseline (slow for big models).
    #[arg(long)]
    reference: bool,
}

/// Training FLOPs of one token: 6 per matmul weight (forward 2, backward 4), plus attention's
/// score and value products (2·S·q_dim each forward, twice that backward) over the full S×S
/// scores the kernels compute before masking.
fn flops_per_token(config: &ModelConfig, seq: usize, params: usize) -> f64 {
    let embedding_lookup = if config.tied_embeddings {
        0
    } else {
        config.vocab_size * config.dim
    };
    let dense = 6.0 * (params - embedding_lookup) as f64;
    let attention = 12.0 * config.n_layers as f64 * config.q_dim() as f64 * seq as f64;
    dense + attention
}

/// Median of a small sample.
fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

/// Peak resident set size of this process in bytes (Linux and macOS), or None elsewhere.
fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Times `steps` training steps of `engine` after one warm-up; returns milliseconds per step.
fn time_steps(
    config: &ModelConfig,
    engine: &mut dyn Engine,
    params: &mut Params,
    rows: &[Vec<u32>],
    steps: usize,
) -> Result<Vec<f64>> {
    let mut optimizer = Optimizer::new(OptimizerSpec::adamw(0.1), params);
    let mut grads = Params::zeros(config);
    let mut times = Vec::with_capacity(steps);
    for i in 0..=steps {
        let start = Instant::now();
        for (_, g) in grads.iter_mut() {
            g.data_mut().fill(0.0);
        }
        engine.forward_backward(params, rows, 1.0, &mut grads)?;
        optimizer.step(params, &grads, 1e-4);
        engine.stage(params)?;
        if i > 0 {
            times.push(start.elapsed().as_secs_f64() * 1e3);
        }
    }
    Ok(times)
}

/// GFLOP/s of a bare GEMM shaped like the model's FFN projection, as the machine's baseline.
fn bare_gemm_gflops(config: &ModelConfig, seq: usize) -> f64 {
    let (m, k, n) = (seq, config.dim, config.hidden_dim);
    let a = vec![0.5f32; m * k];
    let b = vec![0.25f32; k * n];
    let mut c = vec![0f32; m * n];
    let mut best = f64::INFINITY;
    for _ in 0..5 {
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
        best = best.min(start.elapsed().as_secs_f64());
    }
    2.0 * (m * k * n) as f64 / best / 1e9
}

/// Runs the benchmark and prints one line per engine.
pub fn run(args: &TrainBenchArgs) -> Result<()> {
    if args.batch == 0 || args.seq == 0 || args.steps == 0 {
        bail!("--batch, --seq and --steps must be at least 1");
    }
    let mut config = ModelConfig::preset(&args.model)?;
    if args.seq > config.max_seq_len {
        bail!(
            "--seq {} exceeds {}'s max_seq_len {}",
            args.seq,
            args.model,
            config.max_seq_len
        );
    }
    config.max_seq_len = config.max_seq_len.max(args.seq);
    let mut params = Params::init(&config, 1)?;
    let n_params = params.num_params();
    let rows: Vec<Vec<u32>> = (0..args.batch)
        .map(|b| {
            (0..=args.seq)
                .map(|t| ((b * 7919 + t * 104_729) % config.vocab_size) as u32)
                .collect()
        })
        .collect();
    let tokens = (args.batch * args.seq) as f64;
    let flops = flops_per_token(&config, args.seq, n_params) * tokens;
    let gemm_gflops = bare_gemm_gflops(&config, args.seq);
    println!(
        "bench train: {} ({:.1}M params), batch {} x seq {}, {} timed steps, {} threads",
        args.model,
        n_params as f64 / 1e6,
        args.batch,
        args.seq,
        args.steps,
        rayon::current_num_threads()
    );
    println!(
        "baseline: bare GEMM {}x{}x{} at {gemm_gflops:.1} GFLOP/s",
        args.seq, config.dim, config.hidden_dim
    );
    let (mut engine, why) = args.device.device.engine(&config, args.seq, &params)?;
    println!("device: {why}");
    let ms = median(time_steps(
        &config,
        engine.as_mut(),
        &mut params,
        &rows,
        args.steps,
    )?);
    let gflops = flops / (ms / 1e3) / 1e9;
    println!(
        "{}: {ms:.1} ms/step, {:.0} tokens/s, {gflops:.1} GFLOP/s ({:.2}x bare GEMM), peak RSS {}",
        engine.describe(),
        tokens / (ms / 1e3),
        gflops / gemm_gflops,
        peak_rss_bytes().map_or("n/a".to_string(), |b| format!(
            "{:.0} MiB",
            b as f64 / 1048576.0
        ))
    );
    if args.reference {
        let mut reference = ReferenceEngine::new(&config);
        let ref_ms = median(time_steps(
            &config,
            &mut reference,
            &mut params,
            &rows,
            args.steps,
        )?);
        println!(
            "reference engine: {ref_ms:.1} ms/step ({:.2}x the kernels' time)",
            ref_ms / ms
        );
    }
    Ok(())
}
