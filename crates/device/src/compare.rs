//! Running one kernel on two devices and judging whether they agree: what `anetrain doctor`
//! reports for every kernel of a model.
//!
//! Both devices get the same inputs: uniform random values in [`INPUT_RANGE`], rounded to fp16
//! so a device with fp16 input buffers (the ANE) sees exactly the numbers an fp32 device sees.
//! Each output is compared element by element. The relative error of element `i` is
//! `|a_i − b_i| / max(|b_i|, floor)` with `b` the reference and `floor` the RMS of the
//! reference output, so elements near zero (cancellation in a sum) are judged against the
//! output's typical size instead of dividing by almost nothing.

use crate::{Device, Kernel};
use anetrain_mil::Bundle;
use half::f16;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::time::Instant;

/// Inputs are drawn uniformly from this range: the scale of normalised activations and of the
/// packed weights of the dynamic-weight kernels after fp16 staging.
pub const INPUT_RANGE: (f32, f32) = (-1.0, 1.0);

/// Timed runs per device after the first (checked) run; the best is reported, so one
/// scheduler hiccup does not decide the number.
pub const TIMED_RUNS: usize = 3;

/// How far a candidate may stray from the reference before the verdict is a mismatch.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Tolerance {
    /// Largest allowed relative error (see the module docs for its definition).
    pub max_rel: f32,
}

impl Tolerance {
    /// The fp16 tolerance: relative error 5e-2 against the output's RMS.
    ///
    /// One fp16 rounding is off by at most 2⁻¹¹ ≈ 4.9e-4 of the value. A training kernel
    /// chains up to about ten rounded ops (the attention backward: matmul, scale, mask, exp,
    /// sum, divide, matmul, product, sum, matmul), and an exponential turns an absolute input
    /// error into a relative output error of the same size, so attention scores of size ±7
    /// (random, unscaled queries) carry rounding errors of ~7 units into the softmax.
    /// Measured `cpu-f16` against `cpu` on the stories15M kernels at seq 256: 5e-4 for the
    /// plain matmuls, 7.6e-3 for `attention_bwd`, 1.3e-2 for `decode_attention` (cache 256).
    /// 5e-2 leaves about four times that for the ANE's own exp tables and accumulators, while
    /// a wrong layout, port order or conversion moves whole elements by about their own size
    /// (relative error ≳ 0.5), ten times beyond it.
    pub const FP16: Tolerance = Tolerance { max_rel: 5e-2 };
}

impl fmt::Display for Tolerance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "max |a - b| / max(|b|, rms(b)) <= {:e} (fp16 rounds by 2^-11, over up to ~10 chained ops)",
            self.max_rel
        )
    }
}

/// The outcome of one comparison.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "verdict", content = "error", rename_all = "lowercase")]
pub enum Verdict {
    /// Every output within tolerance.
    Pass,
    /// Both devices ran, but some output differs by more than the tolerance (or one device
    /// produced NaN or infinity where the other did not).
    Mismatch,
    /// A device could not compile or run the kernel; carries which one and its message.
    Failed(String),
}

impl Verdict {
    /// The word printed in the doctor's table.
    pub fn word(&self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Mismatch => "MISMATCH",
            Verdict::Failed(_) => "FAILED",
        }
    }
}

/// One kernel run on a reference and a candidate device.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KernelComparison {
    /// The kernel's name, e.g. `qkv_fwd`.
    pub name: String,
    /// Names of the reference and candidate devices.
    pub devices: [String; 2],
    /// Compile time per device in milliseconds; `None` where it did not get that far.
    pub compile_ms: [Option<f64>; 2],
    /// Best of [`TIMED_RUNS`] run times per device in milliseconds.
    pub run_ms: [Option<f64>; 2],
    /// Largest |candidate − reference| over every output element; `None` unless both ran.
    pub max_abs: Option<f32>,
    /// Largest relative error (module docs); infinite when non-finite values disagree.
    pub max_rel: Option<f32>,
    /// The output holding the largest relative error, to point a bug report at it.
    pub worst_output: Option<String>,
    #[serde(flatten)]
    pub verdict: Verdict,
}

/// True when every comparison passed: the doctor's exit status.
pub fn all_pass(results: &[KernelComparison]) -> bool {
    results.iter().all(|r| r.verdict == Verdict::Pass)
}

/// Compiles and runs `bundle` on both devices with the same random inputs (from `seed`) and
/// compares every output under `tolerance`. Never fails: failures are the verdict.
pub fn compare_on(
    reference: &dyn Device,
    candidate: &dyn Device,
    name: &str,
    bundle: &Bundle,
    seed: u64,
    tolerance: Tolerance,
) -> KernelComparison {
    let mut result = KernelComparison {
        name: name.to_string(),
        devices: [reference.name(), candidate.name()],
        compile_ms: [None; 2],
        run_ms: [None; 2],
        max_abs: None,
        max_rel: None,
        worst_output: None,
        verdict: Verdict::Pass,
    };
    let mut outputs: [Vec<(String, Vec<f32>)>; 2] = [Vec::new(), Vec::new()];
    for (slot, device) in [reference, candidate].into_iter().enumerate() {
        match run_once(device, bundle, seed) {
            Ok(run) => {
                result.compile_ms[slot] = Some(run.compile_ms);
                result.run_ms[slot] = Some(run.run_ms);
                outputs[slot] = run.outputs;
            }
            Err((compile_ms, message)) => {
                result.compile_ms[slot] = compile_ms;
                result.verdict = Verdict::Failed(format!("{}: {message}", device.name()));
                return result;
            }
        }
    }
    let [reference_out, candidate_out] = outputs;
    if let Err(message) = judge(&reference_out, &candidate_out, tolerance, &mut result) {
        result.verdict = Verdict::Failed(message);
    }
    result
}

/// One device's side of a comparison.
struct DeviceRun {
    compile_ms: f64,
    run_ms: f64,
    outputs: Vec<(String, Vec<f32>)>,
}

/// Compiles, writes the inputs, runs once for the outputs and [`TIMED_RUNS`] more for the time.
/// The error carries the compile time when compiling succeeded.
fn run_once(
    device: &dyn Device,
    bundle: &Bundle,
    seed: u64,
) -> Result<DeviceRun, (Option<f64>, String)> {
    let start = Instant::now();
    let mut kernel = device
        .compile(&bundle.program, &bundle.weights)
        .map_err(|e| (None, format!("compile: {e}")))?;
    let compile_ms = millis(start);
    let fail = |stage: &str, e: crate::DeviceError| (Some(compile_ms), format!("{stage}: {e}"));
    for (index, data) in random_inputs(kernel.as_ref(), seed).iter().enumerate() {
        kernel
            .write_input(index, data)
            .map_err(|e| fail("write input", e))?;
    }
    kernel.run().map_err(|e| fail("run", e))?;
    let mut outputs = Vec::with_capacity(kernel.outputs().len());
    for (index, spec) in kernel.outputs().iter().enumerate() {
        let mut out = vec![0.0; spec.numel()];
        kernel
            .read_output(index, &mut out)
            .map_err(|e| fail("read output", e))?;
        outputs.push((spec.name.clone(), out));
    }
    let mut run_ms = f64::INFINITY;
    for _ in 0..TIMED_RUNS {
        let start = Instant::now();
        kernel.run().map_err(|e| fail("run", e))?;
        run_ms = run_ms.min(millis(start));
    }
    Ok(DeviceRun {
        compile_ms,
        run_ms,
        outputs,
    })
}

fn millis(start: Instant) -> f64 {
    start.elapsed().as_secs_f64() * 1e3
}

/// The inputs both devices get: fp16-exact uniform values in [`INPUT_RANGE`] for float inputs,
/// 0 or 1 for integer and bool inputs (safe as indices and masks). Input `i` of a kernel is
/// drawn from its own stream, so adding an input does not change the others.
pub fn random_inputs(kernel: &dyn Kernel, seed: u64) -> Vec<Vec<f32>> {
    let (lo, hi) = INPUT_RANGE;
    kernel
        .inputs()
        .iter()
        .enumerate()
        .map(|(index, spec)| {
            let mut rng =
                SplitMix64::new(seed ^ (index as u64).wrapping_mul(0xA24B_AED4_963E_E407));
            let float = spec.ty.dtype.is_float();
            (0..spec.numel())
                .map(|_| {
                    let u = rng.unit();
                    if float {
                        f16::from_f32(lo + (hi - lo) * u).to_f32()
                    } else {
                        (u >= 0.5) as u8 as f32
                    }
                })
                .collect()
        })
        .collect()
}

/// Fills the error fields of `result` and sets a mismatch verdict; `Err` when the two devices
/// disagree about the outputs' names or sizes, which is a failure, not a numerical difference.
fn judge(
    reference: &[(String, Vec<f32>)],
    candidate: &[(String, Vec<f32>)],
    tolerance: Tolerance,
    result: &mut KernelComparison,
) -> Result<(), String> {
    if reference.len() != candidate.len() {
        return Err(format!(
            "the devices disagree on the number of outputs ({} against {})",
            reference.len(),
            candidate.len()
        ));
    }
    let (mut max_abs, mut max_rel) = (0.0f32, 0.0f32);
    for ((name, b), (other, a)) in reference.iter().zip(candidate) {
        if name != other || a.len() != b.len() {
            return Err(format!(
                "output `{name}` ({} elements) does not match the candidate's `{other}` ({})",
                b.len(),
                a.len()
            ));
        }
        let (abs, rel) = output_error(a, b);
        max_abs = max_abs.max(abs);
        if rel > max_rel || result.worst_output.is_none() {
            max_rel = max_rel.max(rel);
            result.worst_output = Some(name.clone());
        }
    }
    result.max_abs = Some(max_abs);
    result.max_rel = Some(max_rel);
    // A NaN error is a mismatch too: only a comparable value within tolerance passes.
    if max_rel.is_nan() || max_rel > tolerance.max_rel {
        result.verdict = Verdict::Mismatch;
    }
    Ok(())
}

/// `(max |a − b|, max |a − b| / max(|b|, rms(b)))` of one output; both are infinite where one
/// side is non-finite and the other is not (or both are but differ). One pass for the RMS and
/// one for the errors: O(n), no allocation.
pub fn output_error(candidate: &[f32], reference: &[f32]) -> (f32, f32) {
    let finite = reference.iter().filter(|v| v.is_finite());
    let (sum_sq, count) = finite.fold((0.0f64, 0usize), |(s, n), &v| {
        (s + f64::from(v) * f64::from(v), n + 1)
    });
    let rms = if count == 0 {
        0.0
    } else {
        (sum_sq / count as f64).sqrt() as f32
    };
    // An all-zero reference would make every error relative to nothing; the smallest normal
    // fp16 keeps the ratio finite and still flags any visible difference.
    let floor = rms.max(f16::MIN_POSITIVE.to_f32());
    let (mut max_abs, mut max_rel) = (0.0f32, 0.0f32);
    for (&a, &b) in candidate.iter().zip(reference) {
        let diff = if a.is_finite() && b.is_finite() {
            (a - b).abs()
        } else if a == b || (a.is_nan() && b.is_nan()) {
            0.0
        } else {
            f32::INFINITY
        };
        // An infinite `b` would turn an infinite difference into inf / inf = NaN, which
        // `max` ignores; a disagreement about non-finite values is infinitely wrong.
        let rel = if diff.is_infinite() {
            f32::INFINITY
        } else {
            diff / b.abs().max(floor)
        };
        max_abs = max_abs.max(diff);
        max_rel = max_rel.max(rel);
    }
    (max_abs, max_rel)
}

/// A tiny, well-mixed generator (Steele et al.'s SplitMix64), so the doctor's inputs are the
/// same on every machine without a random-number dependency.
struct SplitMix64(u64);

impl SplitMix64 {
    fn new(seed: u64) -> SplitMix64 {
        SplitMix64(seed)
    }

    /// Uniform in [0, 1) with 24 bits, exact in f32.
    fn unit(&mut self) -> f32 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 40) as f32 / (1u64 << 24) as f32
    }
}
