//! `anetrain doctor --probe`: measure which disputed ANE rules hold on this chip and macOS
//! (ane-reference §5, §9, §10) and record the answers in a capability file.
//!
//! Each probe is a small kernel that breaks one catalog rule (or, for a baseline, none),
//! anchored by a 1×1 conv that mixes neighbouring channels so a mis-strided or mis-ordered
//! buffer moves whole elements. Every port holds at least 48 KiB and has a last axis that is a
//! multiple of 32 unless the probe is about exactly that, so a probe fails for its own rule
//! and not for another. A probe runs on the device under test and on the fp32 CPU interpreter
//! with the same inputs; it passes when the outputs agree within [`Tolerance::FP16`].
//!
//! A failed `ANECCompile` cannot be recovered in-process (§1.7), so `anetrain doctor --probe`
//! (in `doctor`) runs each probe in a child, `anetrain doctor --probe-one ID` ([`probe_one`]),
//! which prints one JSON line ([`parse_outcome`] reads it back).
//!
//! Reading the results: a probe that compiled, ran and matched refutes its rule on this
//! machine; any other outcome confirms it (the construct does not give right numbers here,
//! whatever the reason). That inference needs the baselines to pass, which
//! [`measured_rules`] insists on.

use anetrain_device::ane::capabilities::{Capabilities, Probe};
use anetrain_device::ane::SurfacePolicy;
use anetrain_device::compare::{compare_on, Tolerance, Verdict};
use anetrain_device::{AneDevice, CpuDevice, Device, Precision};
use anetrain_mil::check::MeasuredRules;
use anetrain_mil::{Builder, Bundle, ConvOptions, DType, Var};
use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Value};
use std::process::ExitCode;

/// The id of the probe every other result depends on: the plain anchored kernel.
pub const BASELINE: &str = "baseline";

/// Seed of the inputs both devices get.
const SEED: u64 = 7;

/// Surfaces exactly as large as their payload, any width: the probes test those rules, so
/// the device must not pad them away (its default is the conservative reading of §2.4).
/// Inputs and outputs still share one allocation each, as every anetrain kernel's do (§2.5).
const PROBE_POLICY: SurfacePolicy = SurfacePolicy {
    min_bytes: 1,
    width_multiple: 1,
    min_width: 1,
};

type Build = Box<dyn Fn() -> anetrain_mil::Result<Bundle>>;

/// One probe kernel.
pub struct ProbeSpec {
    /// Stable id: the `--probe-one` argument and the `op` of its capability-file record.
    pub id: &'static str,
    /// The catalog rule this kernel breaks; `None` for baselines, which break none.
    pub rule: Option<&'static str>,
    build: Build,
}

impl ProbeSpec {
    /// The kernel and its weight files.
    pub fn bundle(&self) -> anetrain_mil::Result<Bundle> {
        (self.build)()
    }
}

fn spec(id: &'static str, rule: Option<&'static str>, build: Build) -> ProbeSpec {
    ProbeSpec { id, rule, build }
}

/// Every probe, baselines first. Widths and channel counts keep each port at ≥ 48 KiB
/// (`C·W ≥ 24576` in fp16) unless the probe is about buffer size.
pub fn matrix() -> Vec<ProbeSpec> {
    let width = Some("io-width-multiple-of-32");
    let min_bytes = Some("io-min-bytes");
    let trans = Some("transcendentals");
    vec![
        spec(BASELINE, None, Box::new(|| mixed(384, 64))),
        spec("width-32", None, Box::new(|| mixed(768, 32))),
        spec("tanh", None, unary(|b, h| b.tanh(h))),
        spec("reduce_sum", None, unary(|b, h| reduce(b, h, false))),
        spec("fp32-io", None, Box::new(fp32_io)),
        spec("int8-weight", None, Box::new(|| int8_weight(None))),
        spec("width-16", width, Box::new(|| mixed(1536, 16))),
        spec("width-48", width, Box::new(|| mixed(512, 48))),
        spec("width-100", width, Box::new(|| mixed(246, 100))),
        spec("width-4082", width, Box::new(|| mixed(100, 4082))),
        spec("min-bytes-3k", min_bytes, Box::new(|| mixed(48, 32))),
        spec("min-bytes-16k", min_bytes, Box::new(|| mixed(256, 32))),
        spec("gelu", Some("gelu"), unary(|b, h| b.gelu(h, "EXACT"))),
        spec(
            "gelu-tanh",
            Some("gelu"),
            unary(|b, h| b.gelu(h, "TANH_APPROXIMATION")),
        ),
        spec("exp", trans, unary(|b, h| b.exp(h))),
        // log and sqrt of h² + 1 keep the argument ≥ 1, where both are well conditioned.
        spec(
            "log",
            trans,
            unary(|b, h| square_plus_one(b, h, Builder::log)),
        ),
        spec(
            "sqrt",
            trans,
            unary(|b, h| square_plus_one(b, h, Builder::sqrt)),
        ),
        spec(
            "reduce_mean",
            Some("reduce-mean-m5"),
            unary(|b, h| reduce(b, h, true)),
        ),
        spec("concat", Some("concat"), unary(concat_channels)),
        spec(
            "slice-concat-width-offset",
            Some("width-offset-slice-concat"),
            unary(concat_width_offset_slices),
        ),
        spec(
            "slice-width-offset-range",
            Some("width-offset-slice-range"),
            Box::new(slice_width_offset_range),
        ),
        spec(
            "int8-weight-range",
            Some("int8-weight-activation-range"),
            Box::new(|| int8_weight(Some(LARGE))),
        ),
        spec("fp32-compute", Some("fp16-compute"), Box::new(fp32_compute)),
        spec(
            "conv-kernel-width-14",
            Some("conv-kernel-width-14"),
            Box::new(|| wide_kernel(14)),
        ),
        spec(
            "conv-kernel-width-16",
            Some("conv-kernel-width-16"),
            Box::new(|| wide_kernel(16)),
        ),
        spec(
            "conv-input-channels-8256",
            Some("conv-input-channels-8192"),
            Box::new(many_input_channels),
        ),
        spec("rank2-io", Some("io-rank"), Box::new(rank2_io)),
        spec(
            "two-inputs-unequal",
            Some("equal-input-sizes"),
            Box::new(two_inputs),
        ),
        spec(
            "two-outputs-unequal",
            Some("equal-output-sizes"),
            Box::new(two_outputs),
        ),
        spec(
            "sdpa-mask",
            Some("sdpa-mask-ignored"),
            Box::new(|| sdpa(true)),
        ),
    ]
}

/// The probe with id `id`, or an error listing the ids.
pub fn find(id: &str) -> Result<ProbeSpec> {
    let all = matrix();
    let ids: Vec<&str> = all.iter().map(|p| p.id).collect();
    let list = ids.join(", ");
    all.into_iter()
        .find(|p| p.id == id)
        .ok_or_else(|| anyhow!("there is no probe `{id}`; the probes are: {list}"))
}

// ------------------------------------------------------------------------------ kernels

/// A magnitude past the 4094 where the ×16 activation encoding of §5 rows 24–25 saturates.
const LARGE: f32 = 6000.0;

/// `w[o][i] = 1/4 if i == o, 1/2 if i == (o + 1) mod C`: every output mixes two channels, so
/// a buffer read at the wrong stride or in the wrong order gives visibly wrong elements (an
/// identity would map a uniformly mis-strided input straight back to the same positions).
fn mix_weight(c: usize) -> Vec<f32> {
    let mut w = vec![0.0; c * c];
    for o in 0..c {
        w[o * c + o] = 0.25;
        w[o * c + (o + 1) % c] = 0.5;
    }
    w
}

/// The anchor: `conv(x, mix_weight)` on a `[1, C, 1, W]` fp16 value.
fn mix(b: &mut Builder, x: Var) -> anetrain_mil::Result<Var> {
    let c = b.shape(x)[1];
    let w = b.weight("mix", DType::Fp16, [c, c, 1, 1], &mix_weight(c))?;
    b.conv(x, w, &ConvOptions::default())
}

/// `y = mix(x)` on `x: [1, c, 1, w]` fp16: the baselines, widths and buffer sizes.
fn mixed(c: usize, w: usize) -> anetrain_mil::Result<Bundle> {
    let mut b = Builder::new();
    let x = b.input("x", DType::Fp16, [1, c, 1, w])?;
    let y = mix(&mut b, x)?;
    b.output(y, "y")?;
    b.finish()
}

/// `y = f(mix(x))` on `x: [1, 384, 1, 64]` fp16: one op (or a small group) under test.
fn unary(f: fn(&mut Builder, Var) -> anetrain_mil::Result<Var>) -> Build {
    Box::new(move || {
        let mut b = Builder::new();
        let x = b.input("x", DType::Fp16, [1, 384, 1, 64])?;
        let h = mix(&mut b, x)?;
        let y = f(&mut b, h)?;
        b.output(y, "y")?;
        b.finish()
    })
}

fn square_plus_one(
    b: &mut Builder,
    h: Var,
    f: fn(&mut Builder, Var) -> anetrain_mil::Result<Var>,
) -> anetrain_mil::Result<Var> {
    let sq = b.mul(h, h)?;
    let arg = b.add_scalar(sq, 1.0)?;
    f(b, arg)
}

/// `h − mean_c(h)` or `h + sum_c(h) / C`: a channel reduction broadcast back, so the output
/// keeps the 48 KiB shape instead of shrinking to one channel.
fn reduce(b: &mut Builder, h: Var, mean: bool) -> anetrain_mil::Result<Var> {
    if mean {
        let m = b.reduce_mean(h, &[1], true)?;
        b.sub(h, m)
    } else {
        let s = b.reduce_sum(h, &[1], true)?;
        let s = b.scale(s, 1.0 / 384.0)?;
        b.add(h, s)
    }
}

fn concat_channels(b: &mut Builder, h: Var) -> anetrain_mil::Result<Var> {
    let r = b.relu(h)?;
    b.concat(&[h, r], 1)
}

/// Two slices beginning past 0 on the last axis, joined there: `h[..., 16..48] ++ h[..., 32..64]`.
/// It needs `concat`, so a failure means something only where the `concat` probe passed.
fn concat_width_offset_slices(b: &mut Builder, h: Var) -> anetrain_mil::Result<Var> {
    let first = b.slice(h, &[0, 0, 0, 16], &[1, 384, 1, 32])?;
    let second = b.slice(h, &[0, 0, 0, 32], &[1, 384, 1, 32])?;
    b.concat(&[first, second], 3)
}

/// `mix(x · LARGE)[..., 32..64]`: a width-offset slice of values up to 0.75 · LARGE.
fn slice_width_offset_range() -> anetrain_mil::Result<Bundle> {
    let mut b = Builder::new();
    let x = b.input("x", DType::Fp16, [1, 768, 1, 64])?;
    let big = b.scale(x, LARGE)?;
    let h = mix(&mut b, big)?;
    let y = b.slice(h, &[0, 0, 0, 32], &[1, 768, 1, 32])?;
    b.output(y, "y")?;
    b.finish()
}

/// `conv(x · gain, W)` with `W = mix_weight` stored as int8 (`q = 32, 64`, scale 1/128, exact)
/// and dequantized at compile time; no gain keeps the activations in [-1, 1].
fn int8_weight(gain: Option<f32>) -> anetrain_mil::Result<Bundle> {
    let c = 384;
    let q: Vec<i8> = mix_weight(c).iter().map(|&w| (w * 128.0) as i8).collect();
    let mut b = Builder::new();
    let x = b.input("x", DType::Fp16, [1, c, 1, 64])?;
    let x = match gain {
        Some(g) => b.scale(x, g)?,
        None => x,
    };
    let w = b.int8_weight("mix_q", [c, c, 1, 1], &q, &[1.0 / 128.0], 0, DType::Fp16)?;
    let y = b.conv(x, w, &ConvOptions::default())?;
    b.output(y, "y")?;
    b.finish()
}

/// fp32 at the boundary only: cast in, mix in fp16, cast out.
fn fp32_io() -> anetrain_mil::Result<Bundle> {
    let mut b = Builder::new();
    let x = b.input("x", DType::Fp32, [1, 384, 1, 64])?;
    let h = b.cast(x, DType::Fp16)?;
    let h = mix(&mut b, h)?;
    let y = b.cast(h, DType::Fp32)?;
    b.output(y, "y")?;
    b.finish()
}

/// The mix conv computed in fp32 throughout.
fn fp32_compute() -> anetrain_mil::Result<Bundle> {
    let c = 384;
    let mut b = Builder::new();
    let x = b.input("x", DType::Fp32, [1, c, 1, 64])?;
    let w = b.weight("mix", DType::Fp32, [c, c, 1, 1], &mix_weight(c))?;
    let y = b.conv(x, w, &ConvOptions::default())?;
    b.output(y, "y")?;
    b.finish()
}

/// A conv `kw` wide, padded to keep the width: `[1, 48, 1, 512] → [1, 48, 1, 512]`.
fn wide_kernel(kw: usize) -> anetrain_mil::Result<Bundle> {
    let c = 48;
    // Small multiples of 1/16 in [-1/8, 1/8], varying along every weight axis.
    let w: Vec<f32> = (0..c * c * kw)
        .map(|i| ((i * 7 + i / kw) % 5) as f32 / 16.0 - 0.125)
        .collect();
    let mut b = Builder::new();
    let x = b.input("x", DType::Fp16, [1, c, 1, 512])?;
    let weight = b.weight("wide", DType::Fp16, [c, c, 1, kw], &w)?;
    let options = ConvOptions {
        pad: [0, 0, (kw - 1) / 2, kw / 2],
        ..ConvOptions::default()
    };
    let y = b.conv(x, weight, &options)?;
    b.output(y, "y")?;
    b.finish()
}

/// A conv from 8256 input channels (past the reported 8192) to 384: output `o` is the mean of
/// input channels `o` and `8255 − o`, so the top channels matter.
fn many_input_channels() -> anetrain_mil::Result<Bundle> {
    let (cin, cout) = (8256, 384);
    let mut w = vec![0.0; cout * cin];
    for o in 0..cout {
        w[o * cin + o] = 0.5;
        w[o * cin + cin - 1 - o] = 0.5;
    }
    let mut b = Builder::new();
    let x = b.input("x", DType::Fp16, [1, cin, 1, 64])?;
    let weight = b.weight("wide_in", DType::Fp16, [cout, cin, 1, 1], &w)?;
    let y = b.conv(x, weight, &ConvOptions::default())?;
    b.output(y, "y")?;
    b.finish()
}

/// Rank-2 ports `[384, 64]`, reshaped to `[1, 384, 1, 64]` around the mix.
fn rank2_io() -> anetrain_mil::Result<Bundle> {
    let mut b = Builder::new();
    let x = b.input("x", DType::Fp16, [384, 64])?;
    let h = b.reshape(x, &[1, 384, 1, 64])?;
    let h = mix(&mut b, h)?;
    let y = b.reshape(h, &[384, 64])?;
    b.output(y, "y")?;
    b.finish()
}

/// Inputs of 96 KiB and 48 KiB: `y = mix(a)[:, :384] + b`. The device allocates both at the
/// larger size (§2.5), so this asks whether unequal *declared* sizes work through it.
fn two_inputs() -> anetrain_mil::Result<Bundle> {
    let mut b = Builder::new();
    let a = b.input("a", DType::Fp16, [1, 768, 1, 64])?;
    let small = b.input("b", DType::Fp16, [1, 384, 1, 64])?;
    let h = mix(&mut b, a)?;
    let top = b.slice(h, &[0, 0, 0, 0], &[1, 384, 1, 64])?;
    let y = b.add(top, small)?;
    b.output(y, "y")?;
    b.finish()
}

/// Outputs of 96 KiB and 48 KiB: `y = mix(x)`, `z = 2 · y[:, :384]` (allocated alike, as the
/// inputs of [`two_inputs`]).
fn two_outputs() -> anetrain_mil::Result<Bundle> {
    let mut b = Builder::new();
    let x = b.input("x", DType::Fp16, [1, 768, 1, 64])?;
    let h = mix(&mut b, x)?;
    let top = b.slice(h, &[0, 0, 0, 0], &[1, 384, 1, 64])?;
    let z = b.scale(top, 2.0)?;
    b.output(h, "y")?;
    b.output(z, "z")?;
    b.finish()
}

/// Self-attention through `scaled_dot_product_attention`, causal when `masked`: 6 heads of 64
/// over 64 positions. If the mask is ignored, every row but the last attends to the future.
fn sdpa(masked: bool) -> anetrain_mil::Result<Bundle> {
    let (heads, dim, seq) = (6, 64, 64);
    let mut b = Builder::new();
    let x = b.input("x", DType::Fp16, [1, heads * dim, 1, seq])?;
    let h = mix(&mut b, x)?;
    let h = b.reshape(h, &[1, heads, dim, seq])?;
    let t = b.transpose(h, &[0, 1, 3, 2])?;
    let mask: Vec<f32> = (0..seq * seq)
        .map(|i| if i % seq > i / seq { -1e4 } else { 0.0 })
        .collect();
    let mask = b.tensor_constant(DType::Fp16, [1, 1, seq, seq], &mask)?;
    let a = b.scaled_dot_product_attention(t, t, t, masked.then_some(mask))?;
    let a = b.transpose(a, &[0, 1, 3, 2])?;
    let y = b.reshape(a, &[1, heads * dim, 1, seq])?;
    b.output(y, "y")?;
    b.finish()
}

// ------------------------------------------------------------------------------ child

/// `anetrain doctor --probe-one ID --device D`: runs probe `id` on `device` (`ane`, or `cpu`
/// and `cpu-f16` to exercise the machinery anywhere) against the fp32 CPU and prints the
/// outcome as one JSON line. A failure on the device is a result, not an error; a failure on
/// the CPU reference is a bug in the probe, reported as an error.
pub fn probe_one(id: &str, device: &str) -> Result<ExitCode> {
    let spec = find(id)?;
    let bundle = spec
        .bundle()
        .with_context(|| format!("building probe `{id}`"))?;
    let candidate: Box<dyn Device> = match device {
        "ane" => probe_ane()?,
        "cpu" => Box::new(CpuDevice::new(Precision::F32)),
        "cpu-f16" => Box::new(CpuDevice::new(Precision::F16)),
        other => bail!("unknown probe device `{other}`; choose ane, cpu or cpu-f16"),
    };
    let reference = CpuDevice::new(Precision::F32);
    let result = compare_on(
        &reference,
        candidate.as_ref(),
        id,
        &bundle,
        SEED,
        Tolerance::FP16,
    );
    if let Verdict::Failed(message) = &result.verdict {
        // compare_on runs the reference first, so no reference run time means it failed there.
        if result.run_ms[0].is_none() {
            bail!(
                "probe `{id}` fails on the CPU reference ({message}), so it measures nothing; \
                 this is a bug in anetrain, please report it"
            );
        }
    }
    let (dtype, width) = port(&bundle)?;
    let error = match &result.verdict {
        Verdict::Pass => None,
        Verdict::Mismatch => Some(format!(
            "wrong numbers: relative error {:.3e} in `{}`, tolerance {:e}",
            result.max_rel.unwrap_or(f32::INFINITY),
            result.worst_output.as_deref().unwrap_or("?"),
            Tolerance::FP16.max_rel
        )),
        Verdict::Failed(message) => Some(message.clone()),
    };
    let line = json!({
        "id": spec.id,
        "rule": spec.rule,
        "device": candidate.name(),
        "dtype": dtype.name(),
        "width": width,
        "compiled": result.compile_ms[1].is_some(),
        "ran": result.verdict == Verdict::Pass,
        "max_rel": result.max_rel,
        "error": error,
    });
    println!("{line}");
    Ok(ExitCode::SUCCESS)
}

/// The ANE with [`PROBE_POLICY`] surfaces.
// Off Apple silicon `AneDevice` is uninhabited, so everything after `new()` is statically dead.
#[cfg_attr(
    not(all(target_os = "macos", target_arch = "aarch64")),
    allow(unreachable_code)
)]
fn probe_ane() -> Result<Box<dyn Device>> {
    let ane = AneDevice::new().context("--device ane cannot run probes here")?;
    Ok(Box::new(ane.with_surface_policy(PROBE_POLICY)))
}

/// The dtype and last-axis width of a probe's first input, the key of its record.
pub fn port(bundle: &Bundle) -> Result<(DType, usize)> {
    let input = bundle
        .program
        .main()
        .and_then(|f| f.inputs.first())
        .ok_or_else(|| anyhow!("a probe kernel has no `main` input"))?;
    Ok((input.1.dtype, input.1.shape.last().copied().unwrap_or(1)))
}

/// The capability record of one child's JSON line.
pub fn parse_outcome(line: &str) -> Result<Probe> {
    let v: Value = serde_json::from_str(line).context("the probe result is not JSON")?;
    let text = |key: &str| v[key].as_str().map(str::to_string);
    let flag = |key: &str| v[key].as_bool();
    let missing = || anyhow!("the probe result `{line}` lacks a field");
    Ok(Probe {
        op: text("id").ok_or_else(missing)?,
        dtype: text("dtype").ok_or_else(missing)?,
        width: v["width"].as_u64().ok_or_else(missing)? as usize,
        compiled: flag("compiled").ok_or_else(missing)?,
        ran: flag("ran").ok_or_else(missing)?,
        error: text("error"),
    })
}

/// The rules a capability file settles, for the constraint checker. Refuses a file whose
/// baseline did not pass: then every probe fails for the same reason and says nothing about
/// its own rule.
pub fn measured_rules(caps: &Capabilities) -> Result<MeasuredRules> {
    let baseline = caps.probes.iter().find(|p| p.op == BASELINE);
    match baseline {
        Some(p) if p.compiled && p.ran => {}
        Some(p) => bail!(
            "the `{BASELINE}` probe failed on {} ({}), so the other probes' failures say nothing \
             about their rules; fix that first (`anetrain doctor` compares every kernel), then \
             probe again",
            caps.chip,
            p.error.as_deref().unwrap_or("no message")
        ),
        None => bail!(
            "the capability file has no `{BASELINE}` result, without which no failure can be \
             blamed on its rule; run `anetrain doctor --probe` again"
        ),
    }
    let specs = matrix();
    let rule_of = |p: &Probe| specs.iter().find(|s| s.id == p.op).and_then(|s| s.rule);
    Ok(caps.measured_rules(rule_of)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use anetrain_device::compare::output_error;
    use anetrain_mil::check::{check_with, Applies};
    use anetrain_mil::Chip;

    #[test]
    fn each_rule_probe_breaks_its_rule_and_the_baselines_break_none() {
        for spec in matrix() {
            let program = spec.bundle().unwrap().program;
            match spec.rule {
                Some(rule) => {
                    // Measured to hold, the rule must be reported if the kernel breaks it.
                    let mut holds = MeasuredRules::new(Chip::M4);
                    holds.observe(rule, true).unwrap();
                    let report = check_with(&program, Chip::M4, &holds);
                    let found = report.violations.iter().chain(&report.warnings);
                    assert!(
                        found.into_iter().any(|v| v.rule == rule),
                        "{}: {report}",
                        spec.id
                    );
                }
                None => {
                    let report = anetrain_mil::check(&program, Chip::M4);
                    assert!(
                        report.violations.is_empty() && report.unknown.is_empty(),
                        "{}: {report}",
                        spec.id
                    );
                }
            }
        }
    }

    #[test]
    fn the_baseline_computes_the_channel_mix() {
        let (c, w) = (384, 64);
        let bundle = find(BASELINE).unwrap().bundle().unwrap();
        let device = CpuDevice::new(Precision::F32);
        let mut kernel = device.compile(&bundle.program, &bundle.weights).unwrap();
        let x: Vec<f32> = (0..c * w).map(|i| (i % 29) as f32 / 8.0 - 1.75).collect();
        kernel.write_input(0, &x).unwrap();
        kernel.run().unwrap();
        let mut y = vec![0.0; c * w];
        kernel.read_output(0, &mut y).unwrap();
        for o in 0..c {
            for s in 0..w {
                let want = x[o * w + s] / 4.0 + x[((o + 1) % c) * w + s] / 2.0;
                assert_eq!(y[o * w + s], want, "channel {o}, column {s}");
            }
        }
    }

    /// Runs `bundle` on the fp32 CPU with `x` as its only input.
    fn run_cpu(bundle: &Bundle, x: &[f32]) -> Vec<f32> {
        let device = CpuDevice::new(Precision::F32);
        let mut kernel = device.compile(&bundle.program, &bundle.weights).unwrap();
        kernel.write_input(0, x).unwrap();
        kernel.run().unwrap();
        let mut y = vec![0.0; kernel.outputs()[0].numel()];
        kernel.read_output(0, &mut y).unwrap();
        y
    }

    fn ramp(n: usize) -> Vec<f32> {
        (0..n).map(|i| (i % 29) as f32 / 16.0 - 0.875).collect()
    }

    #[test]
    fn a_device_that_ignores_the_mask_fails_the_sdpa_probe() {
        let x = ramp(384 * 64);
        let causal = run_cpu(&sdpa(true).unwrap(), &x);
        let unmasked = run_cpu(&sdpa(false).unwrap(), &x);
        let (_, rel) = output_error(&unmasked, &causal);
        assert!(rel > 10.0 * Tolerance::FP16.max_rel, "relative error {rel}");
    }

    #[test]
    fn a_device_that_pads_rows_to_32_fails_the_width_probe() {
        // AB's failure (§2.4): the ANE reads and writes rows of 100 at a stride of 128 while
        // the buffers hold them packed. The channel mix keeps that from cancelling out.
        let (c, w, stride) = (246, 100, 128);
        let bundle = find("width-100").unwrap().bundle().unwrap();
        let packed = ramp(c * w);
        let expected = run_cpu(&bundle, &packed);
        let seen: Vec<f32> = (0..c * w)
            .map(|i| packed.get((i / w) * stride + i % w).copied().unwrap_or(0.0))
            .collect();
        let computed = run_cpu(&bundle, &seen);
        let mut read_back = vec![0.0; c * w];
        for (i, v) in computed.iter().enumerate() {
            if let Some(slot) = read_back.get_mut((i / w) * stride + i % w) {
                *slot = *v;
            }
        }
        let (_, rel) = output_error(&read_back, &expected);
        assert!(rel > 10.0 * Tolerance::FP16.max_rel, "relative error {rel}");
    }

    #[test]
    fn child_lines_parse_into_capability_records() {
        let line = r#"{"id":"gelu","rule":"gelu","dtype":"fp16","width":64,"compiled":true,"ran":false,"error":"wrong numbers"}"#;
        let probe = parse_outcome(line).unwrap();
        assert_eq!(
            probe,
            Probe {
                op: "gelu".into(),
                dtype: "fp16".into(),
                width: 64,
                compiled: true,
                ran: false,
                error: Some("wrong numbers".into()),
            }
        );
        assert!(parse_outcome(r#"{"id":"gelu"}"#).is_err());
        assert!(parse_outcome("Segmentation fault").is_err());
    }

    fn record(op: &str, ok: bool) -> Probe {
        Probe {
            op: op.into(),
            dtype: "fp16".into(),
            width: 64,
            compiled: ok,
            ran: ok,
            error: (!ok).then(|| "status=0x1d".to_string()),
        }
    }

    #[test]
    fn a_failing_probe_confirms_its_rule_and_a_passing_one_refutes_it() {
        let mut caps = Capabilities::new("H16G", "Version 15.3 (Build 24D60)");
        for (id, ok) in [
            (BASELINE, true),
            ("gelu", false),
            ("concat", true),
            ("width-48", true),
            ("width-100", false),
            ("tanh", false),
        ] {
            caps.record(record(id, ok));
        }
        let m = measured_rules(&caps).unwrap();
        assert_eq!(m.chip(), Chip::M4);
        assert_eq!(
            m.iter().collect::<Vec<_>>(),
            [
                ("concat", Applies::No),
                ("gelu", Applies::Yes),
                ("io-width-multiple-of-32", Applies::Yes),
            ]
        );
    }

    #[test]
    fn without_a_passing_baseline_nothing_is_concluded() {
        let mut caps = Capabilities::new("H16G", "15.3");
        caps.record(record("gelu", false));
        let e = measured_rules(&caps).unwrap_err().to_string();
        assert!(e.contains("no `baseline` result"), "{e}");
        caps.record(record(BASELINE, false));
        let e = measured_rules(&caps).unwrap_err().to_string();
        assert!(
            e.contains("status=0x1d") && e.contains("probe again"),
            "{e}"
        );
    }
}
