//! `anetrain bench`: the published ANE measurements (ane-reference §8.3, §8.4) as programs any
//! device runs, so the CPU here and the ANE on a Mac report comparable numbers.
//!
//! - `peak`: a stack of 1×1 convs `C → C` on `[1, C, S, S]` fp16 with BLOBFILE weights (MX's
//!   128 × 512ch × 64² program at the defaults): `layers · 2 · C² · S²` FLOPs per run.
//! - `int8`: the same stack with int8 weights (`constexpr_affine_dequantize`, one scale per
//!   output channel) and a `quantize → dequantize` pair between layers (W8A8), against fp16.
//! - `dispatch`: the self-test kernel (one 64-channel conv on 32 columns), timed per call, so
//!   the figure is the fixed cost of a run.
//!
//! `train` and `generate` time the project's own training step and generator (their modules
//! `bench_train` and `bench_generate`).
//!
//! Each benchmark compiles once, runs `--warmup` times untimed, then `--runs` timed runs and
//! reports the best and the median.

use super::device::DeviceArgs;
use anetrain_device::ane::self_test::SelfTest;
use anetrain_device::{Device, Kernel};
use anetrain_mil::{Builder, Bundle, ConvOptions, DType};
use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use std::process::ExitCode;
use std::time::Instant;

/// The benchmarks.
#[derive(Subcommand)]
pub enum BenchCommand {
    /// Speed of the real training step of a preset, against a bare GEMM measured in the same
    /// run. GFLOP/s per token: 6 x params + 12 x layers x q_dim x seq.
    Train(super::bench_train::TrainBenchArgs),
    /// Prefill and decode tokens/s (greedy, KV cache) after 1- and 200-token prompts, and
    /// peak RSS.
    Generate(super::bench_generate::GenerateBenchArgs),
    /// fp16 throughput of a stack of 1x1 convs (the published 128 x 512ch x 64x64 program).
    Peak(StackArgs),
    /// int8 weights and activations (W8A8) against fp16 on the same conv stack.
    Int8(StackArgs),
    /// Latency of a tiny kernel: the fixed cost of one run.
    Dispatch(DispatchArgs),
}

/// Options of the conv-stack benchmarks.
#[derive(Args)]
pub struct StackArgs {
    #[command(flatten)]
    device: DeviceArgs,
    /// Convs in the stack (shrink it for a quick run on the CPU).
    #[arg(long, default_value_t = 128)]
    layers: usize,
    /// Channels in and out of every conv.
    #[arg(long, default_value_t = 512)]
    channels: usize,
    /// Height and width of the activation (S in [1, C, S, S]).
    #[arg(long, default_value_t = 64)]
    spatial: usize,
    /// Untimed runs before timing (the first ANE runs are slower).
    #[arg(long, default_value_t = 1)]
    warmup: usize,
    /// Timed runs.
    #[arg(long, default_value_t = 3)]
    runs: usize,
}

/// Options of the dispatch benchmark.
#[derive(Args)]
pub struct DispatchArgs {
    #[command(flatten)]
    device: DeviceArgs,
    /// Untimed runs before timing.
    #[arg(long, default_value_t = 10)]
    warmup: usize,
    /// Timed runs.
    #[arg(long, default_value_t = 1000)]
    runs: usize,
}

/// Runs `anetrain bench ...`.
pub fn run(command: BenchCommand) -> Result<ExitCode> {
    match command {
        BenchCommand::Train(args) => super::bench_train::run(&args),
        BenchCommand::Generate(args) => super::bench_generate::run(&args),
        BenchCommand::Peak(args) => peak(&args),
        BenchCommand::Int8(args) => int8(&args),
        BenchCommand::Dispatch(args) => dispatch(&args),
    }?;
    Ok(ExitCode::SUCCESS)
}

fn peak(args: &StackArgs) -> Result<()> {
    check_stack(args)?;
    let device = open(args.device)?;
    let bundle = conv_stack(args, Weights::Fp16)?;
    let t = time(device.as_ref(), &bundle, args.warmup, args.runs)?;
    print_stack(precision_label(device.as_ref()), args, &t);
    Ok(())
}

fn int8(args: &StackArgs) -> Result<()> {
    check_stack(args)?;
    let device = open(args.device)?;
    let fp16 = time(
        device.as_ref(),
        &conv_stack(args, Weights::Fp16)?,
        args.warmup,
        args.runs,
    )?;
    let baseline = precision_label(device.as_ref());
    print_stack(baseline, args, &fp16);
    let w8a8 = time(
        device.as_ref(),
        &conv_stack(args, Weights::Int8)?,
        args.warmup,
        args.runs,
    )?;
    print_stack("int8 W8A8", args, &w8a8);
    println!(
        "int8 speed-up over {baseline}: {:.2}x (best against best)",
        fp16.best / w8a8.best
    );
    Ok(())
}

fn dispatch(args: &DispatchArgs) -> Result<()> {
    if args.runs == 0 {
        bail!("--runs 0 measures nothing; pass --runs 100 or more");
    }
    let device = open(args.device)?;
    let bundle = SelfTest::new()?.bundle;
    let t = time(device.as_ref(), &bundle, args.warmup, args.runs)?;
    println!(
        "dispatch ({}: conv 64->64 on [1, 64, 1, 32], {} runs): min {:.1} us, median {:.1} us, \
         compile {:.1} ms",
        device.name(),
        args.runs,
        t.best * 1e6,
        t.median * 1e6,
        t.compile * 1e3
    );
    Ok(())
}

/// Opens the device and prints why it was chosen.
fn open(choice: DeviceArgs) -> Result<Box<dyn Device>> {
    let (device, why) = choice.device.device()?;
    println!("device: {why}");
    Ok(device)
}

fn check_stack(args: &StackArgs) -> Result<()> {
    for (flag, value) in [
        ("--layers", args.layers),
        ("--channels", args.channels),
        ("--spatial", args.spatial),
        ("--runs", args.runs),
    ] {
        if value == 0 {
            bail!("{flag} 0 leaves nothing to measure; pass a positive value");
        }
    }
    // The fp16 weight blobs alone (the devices hold more), before anything is built.
    let (c, s) = (args.channels as u64, args.spatial as u64);
    let bytes = c
        .checked_mul(c)
        .and_then(|w| w.checked_mul(2 * args.layers as u64))
        .and_then(|w| w.checked_add(c.checked_mul(s)?.checked_mul(s)?.checked_mul(4)?))
        .unwrap_or(u64::MAX);
    anetrain_device::host::ensure_memory(
        bytes,
        &format!(
            "a stack of {} convs of {c} channels on {s}x{s}",
            args.layers
        ),
        "pass smaller --channels, --spatial or --layers",
    )
    .map_err(anyhow::Error::msg)
}

/// What a device computes the fp16 stack in: the CPU's f32 mode holds every tensor in fp32.
fn precision_label(device: &dyn Device) -> &'static str {
    if device.name().contains("f32") {
        "fp32"
    } else {
        "fp16"
    }
}

/// Seconds: compile, and the best and median of the timed runs.
struct Timing {
    compile: f64,
    best: f64,
    median: f64,
}

/// Compiles `bundle`, writes a fixed input, runs `warmup` times, then times `runs` runs.
fn time(device: &dyn Device, bundle: &Bundle, warmup: usize, runs: usize) -> Result<Timing> {
    let start = Instant::now();
    let mut kernel = device
        .compile(&bundle.program, &bundle.weights)
        .with_context(|| format!("compiling the benchmark program on {}", device.name()))?;
    let compile = start.elapsed().as_secs_f64();
    write_inputs(kernel.as_mut())?;
    for _ in 0..warmup {
        kernel.run()?;
    }
    let mut samples = Vec::with_capacity(runs);
    for _ in 0..runs {
        let start = Instant::now();
        kernel.run()?;
        samples.push(start.elapsed().as_secs_f64());
    }
    samples.sort_by(f64::total_cmp);
    Ok(Timing {
        compile,
        best: samples[0],
        median: samples[samples.len() / 2],
    })
}

/// Fills every input with a fixed pattern in [-1, 1) (the values do not change the timing).
fn write_inputs(kernel: &mut dyn Kernel) -> Result<()> {
    let sizes: Vec<usize> = kernel.inputs().iter().map(|s| s.numel()).collect();
    for (index, n) in sizes.into_iter().enumerate() {
        let data: Vec<f32> = (0..n).map(|i| pattern(i as u64)).collect();
        kernel.write_input(index, &data)?;
    }
    Ok(())
}

/// A deterministic value in [-1, 1) from a hash of `i`.
fn pattern(i: u64) -> f32 {
    let h = i.wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(29);
    (h >> 40) as f32 / (1u64 << 23) as f32 - 1.0
}

/// How the conv stack stores its weights.
#[derive(Clone, Copy, PartialEq)]
enum Weights {
    Fp16,
    /// int8 weights plus int8 activations between layers.
    Int8,
}

/// The activation scale of the int8 stack: ±4 in 127 steps. Inputs are uniform in [-1, 1]
/// (standard deviation 0.58) and weights have variance 1/C, so activations keep that size
/// through the stack and ±4 is about seven standard deviations.
const ACTIVATION_SCALE: f32 = 4.0 / 127.0;

/// `layers` chained 1×1 convs on `[1, C, S, S]` fp16, each with its own weight file.
fn conv_stack(args: &StackArgs, weights: Weights) -> Result<Bundle> {
    let (c, s) = (args.channels, args.spatial);
    let build = || -> anetrain_mil::Result<Bundle> {
        let mut b = Builder::new();
        let mut h = b.input("x", DType::Fp16, [1, c, s, s])?;
        // Uniform weights of variance 1/C keep the activations' size from layer to layer.
        let bound = (3.0 / c as f32).sqrt();
        for layer in 0..args.layers {
            let w: Vec<f32> = (0..c * c)
                .map(|i| bound * pattern((layer * c * c + i) as u64))
                .collect();
            let file = format!("w{layer}");
            let weight = match weights {
                Weights::Fp16 => b.weight(&file, DType::Fp16, [c, c, 1, 1], &w)?,
                Weights::Int8 => {
                    let (q, scale) = quantize_rows(&w, c);
                    b.int8_weight(&file, [c, c, 1, 1], &q, &scale, 0, DType::Fp16)?
                }
            };
            h = b.conv(h, weight, &ConvOptions::default())?;
            if weights == Weights::Int8 && layer + 1 < args.layers {
                let q = b.quantize(h, ACTIVATION_SCALE)?;
                h = b.dequantize(q, ACTIVATION_SCALE, DType::Fp16)?;
            }
        }
        b.output(h, "y")?;
        b.finish()
    };
    build().context("building the conv-stack benchmark program")
}

/// Symmetric int8 with one scale per output row: `scale = max|row| / 127`.
fn quantize_rows(w: &[f32], cols: usize) -> (Vec<i8>, Vec<f32>) {
    let mut q = Vec::with_capacity(w.len());
    let mut scales = Vec::with_capacity(w.len() / cols);
    for row in w.chunks(cols) {
        let max = row.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let scale = if max > 0.0 { max / 127.0 } else { 1.0 };
        q.extend(
            row.iter()
                .map(|v| (v / scale).round().clamp(-127.0, 127.0) as i8),
        );
        scales.push(scale);
    }
    (q, scales)
}

fn print_stack(label: &str, args: &StackArgs, t: &Timing) {
    let (c, s) = (args.channels as f64, args.spatial as f64);
    let flops = args.layers as f64 * 2.0 * c * c * s * s;
    println!(
        "{label}: {} x conv {}ch on {}x{}: best {:.2} ms ({}), median {:.2} ms, compile {:.0} ms",
        args.layers,
        args.channels,
        args.spatial,
        args.spatial,
        t.best * 1e3,
        rate(flops / t.best),
        t.median * 1e3,
        t.compile * 1e3
    );
}

/// `18.60 TFLOPS` at and above a teraflop, `41.2 GFLOPS` below (the CPU's range).
fn rate(flops_per_second: f64) -> String {
    if flops_per_second >= 1e12 {
        format!("{:.2} TFLOPS", flops_per_second / 1e12)
    } else {
        format!("{:.1} GFLOPS", flops_per_second / 1e9)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn row_quantization_round_trips_within_half_a_step() {
        let w = [0.5, -0.25, 0.1, 0.0, 0.0, 0.0];
        let (q, scale) = quantize_rows(&w, 3);
        assert_eq!(scale, vec![0.5 / 127.0, 1.0]);
        assert_eq!(&q[..3], &[127, -64, 25]);
        for (i, &v) in w[..3].iter().enumerate() {
            assert!((f32::from(q[i]) * scale[0] - v).abs() <= scale[0] / 2.0);
        }
        assert_eq!(&q[3..], &[0, 0, 0]);
    }

    #[test]
    fn rates_switch_units_at_a_teraflop() {
        assert_eq!(rate(18.6e12), "18.60 TFLOPS");
        assert_eq!(rate(41.23e9), "41.2 GFLOPS");
    }

    #[test]
    fn int8_stack_tracks_fp16_on_the_cpu() {
        // W8A8 must compute the same function as fp16 up to quantization: a wiring mistake
        // (wrong scale axis, missing dequantize) moves outputs by their own size.
        let args = StackArgs {
            device: DeviceArgs {
                device: anetrain_model::device_choice::DeviceChoice::Cpu,
            },
            layers: 3,
            channels: 32,
            spatial: 8,
            warmup: 0,
            runs: 1,
        };
        let device = anetrain_device::CpuDevice::default();
        let outputs = [Weights::Fp16, Weights::Int8].map(|w| {
            let bundle = conv_stack(&args, w).unwrap();
            let mut k = device.compile(&bundle.program, &bundle.weights).unwrap();
            write_inputs(k.as_mut()).unwrap();
            k.run().unwrap();
            let mut out = vec![0.0; 32 * 64];
            k.read_output(0, &mut out).unwrap();
            out
        });
        let rms = |v: &[f32]| (v.iter().map(|x| x * x).sum::<f32>() / v.len() as f32).sqrt();
        let diff: Vec<f32> = outputs[0]
            .iter()
            .zip(&outputs[1])
            .map(|(a, b)| a - b)
            .collect();
        assert!(rms(&outputs[0]) > 0.1, "the stack should not vanish");
        // Three layers of ~1% weight error and ~2% activation rounding: well under 10%.
        assert!(
            rms(&diff) < 0.1 * rms(&outputs[0]),
            "{} vs {}",
            rms(&diff),
            rms(&outputs[0])
        );
    }
}
