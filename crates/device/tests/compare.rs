//! The doctor's comparison and verdicts, driven by CPU devices: two that agree, one whose
//! outputs are perturbed by a known amount, and one whose compiler always fails.

use anetrain_device::compare::{
    all_pass, compare_on, output_error, random_inputs, KernelComparison, Tolerance, Verdict,
    INPUT_RANGE,
};
use anetrain_device::{CpuDevice, Device, DeviceError, Kernel, Precision, Result};
use anetrain_mil::{Builder, Bundle, ConvOptions, DType, Program, WeightFiles};
use half::f16;

mod common;
use common::{Fault, Faulty};

const SEED: u64 = 7;

/// `y = sigmoid(conv(x, W))` on `[1, 64, 1, 32]`, with a BLOBFILE weight and a second output
/// `x + x`, so comparisons cover weights, several outputs and an exp-based op.
fn kernel() -> Bundle {
    let mut b = Builder::new();
    let x = b.input("x", DType::Fp16, [1, 64, 1, 32]).unwrap();
    let values: Vec<f32> = (0..64 * 64)
        .map(|i| ((i * 37 % 101) as f32 - 50.0) / 400.0)
        .collect();
    let w = b.weight("w", DType::Fp16, [64, 64, 1, 1], &values).unwrap();
    let h = b.conv(x, w, &ConvOptions::default()).unwrap();
    let y = b.sigmoid(h).unwrap();
    let z = b.add(x, x).unwrap();
    b.output(y, "y").unwrap();
    b.output(z, "z").unwrap();
    b.finish().unwrap()
}

fn cpu(precision: Precision) -> CpuDevice {
    CpuDevice::new(precision)
}

/// A device whose kernels add `delta` to element `at` of output 0: an injected error of known
/// size.
struct Perturbed {
    inner: CpuDevice,
    at: usize,
    delta: f32,
}

impl Device for Perturbed {
    fn name(&self) -> String {
        "perturbed cpu".into()
    }

    fn compile(&self, program: &Program, weights: &WeightFiles) -> Result<Box<dyn Kernel>> {
        Ok(Box::new(Faulty {
            inner: self.inner.compile(program, weights)?,
            fault: Fault::Perturb {
                at: self.at,
                delta: self.delta,
            },
        }))
    }
}

/// A device whose compiler refuses everything, like an ANE rejecting an op.
struct Refusing;

impl Device for Refusing {
    fn name(&self) -> String {
        "refusing".into()
    }

    fn compile(&self, _: &Program, _: &WeightFiles) -> Result<Box<dyn Kernel>> {
        Err(DeviceError::Runtime(
            "_ANECompiler : ANECCompile() FAILED (InvalidMILProgram)".into(),
        ))
    }
}

fn compare(candidate: &dyn Device) -> KernelComparison {
    compare_on(
        &cpu(Precision::F32),
        candidate,
        "test_kernel",
        &kernel(),
        SEED,
        Tolerance::FP16,
    )
}

#[test]
fn identical_devices_pass_with_zero_error() {
    let r = compare(&cpu(Precision::F32));
    assert_eq!(r.verdict, Verdict::Pass);
    assert_eq!(r.max_abs, Some(0.0));
    assert_eq!(r.max_rel, Some(0.0));
    assert_eq!(
        r.devices,
        ["cpu (f32)".to_string(), "cpu (f32)".to_string()]
    );
    assert!(r.compile_ms.iter().all(|t| t.is_some_and(|t| t >= 0.0)));
    assert!(r.run_ms.iter().all(|t| t.is_some_and(|t| t >= 0.0)));
}

#[test]
fn fp16_device_passes_with_a_small_nonzero_error() {
    let r = compare(&cpu(Precision::F16));
    assert_eq!(r.verdict, Verdict::Pass, "{r:?}");
    let rel = r.max_rel.unwrap();
    // Rounding to fp16 must show (the outputs are not all fp16-exact) but stay within a few
    // units of 2^-11 relative to the output's size.
    assert!(rel > 0.0 && rel < 4.0 * 2f32.powi(-11), "max_rel {rel}");
}

#[test]
fn injected_error_beyond_tolerance_is_a_mismatch_of_that_size() {
    let delta = 0.25;
    let r = compare(&Perturbed {
        inner: cpu(Precision::F32),
        at: 5,
        delta,
    });
    assert_eq!(r.verdict, Verdict::Mismatch);
    assert_eq!(r.worst_output.as_deref(), Some("y"));
    // Everything else is bit-identical, so the largest difference is the injected one, up to
    // the f32 rounding of `y + delta`.
    let max_abs = r.max_abs.unwrap();
    assert!((max_abs - delta).abs() < 1e-6, "max_abs {max_abs}");
    // y = sigmoid(.) lies in (0, 1), so |y| < 1 and rms(y) < 1: the relative error exceeds delta.
    assert!(r.max_rel.unwrap() > delta);
    assert!(!all_pass(&[r]));
}

#[test]
fn injected_error_within_tolerance_passes() {
    // sigmoid outputs here are about 0.5, so 1e-3 is a relative error of ~2e-3: well inside.
    let r = compare(&Perturbed {
        inner: cpu(Precision::F32),
        at: 0,
        delta: 1e-3,
    });
    assert_eq!(r.verdict, Verdict::Pass, "{r:?}");
    assert!((r.max_abs.unwrap() - 1e-3).abs() < 1e-6);
}

#[test]
fn nan_from_the_candidate_is_a_mismatch() {
    let r = compare(&Perturbed {
        inner: cpu(Precision::F32),
        at: 3,
        delta: f32::NAN,
    });
    assert_eq!(r.verdict, Verdict::Mismatch);
    assert_eq!(r.max_rel, Some(f32::INFINITY));
}

#[test]
fn compile_failure_is_failed_with_the_device_and_its_message() {
    let r = compare(&Refusing);
    match &r.verdict {
        Verdict::Failed(message) => {
            assert!(message.starts_with("refusing: compile:"), "{message}");
            assert!(message.contains("ANECCompile() FAILED"), "{message}");
        }
        other => panic!("expected Failed, got {other:?}"),
    }
    assert!(r.compile_ms[0].is_some());
    assert_eq!(r.compile_ms[1], None);
    assert_eq!(r.run_ms[1], None);
    assert_eq!(r.max_abs, None);
}

#[test]
fn exit_status_is_success_only_when_every_kernel_passes() {
    let pass = compare(&cpu(Precision::F32));
    let failed = compare(&Refusing);
    assert!(all_pass(&[]));
    assert!(all_pass(&[pass.clone(), pass.clone()]));
    assert!(!all_pass(&[pass.clone(), failed]));
    let mismatch = KernelComparison {
        verdict: Verdict::Mismatch,
        ..pass.clone()
    };
    assert!(!all_pass(&[mismatch, pass]));
}

#[test]
fn relative_error_is_measured_against_the_reference_rms() {
    let reference = [1.0, 0.01, 2.5, -0.5];
    let candidate = [1.0, 0.02, 2.0, -0.5];
    let rms = ((1.0f32 + 1e-4 + 6.25 + 0.25) / 4.0).sqrt();
    let (abs, rel) = output_error(&candidate, &reference);
    assert!((abs - 0.5).abs() < 1e-7);
    // Element 1 is below the RMS floor: 0.01 / rms ≈ 0.0073; element 2: 0.5 / 2.5 = 0.2.
    assert!((rel - 0.2).abs() < 1e-6, "rel {rel}");
    let (_, rel_small) = output_error(&[1.0, 0.02, 2.5, -0.5], &reference);
    assert!((rel_small - 0.01 / rms).abs() < 1e-6, "rel {rel_small}");
}

#[test]
fn non_finite_values_count_only_when_the_devices_disagree() {
    let inf = f32::INFINITY;
    assert_eq!(output_error(&[inf, 1.0], &[inf, 1.0]), (0.0, 0.0));
    assert_eq!(output_error(&[f32::NAN, 1.0], &[f32::NAN, 1.0]), (0.0, 0.0));
    assert_eq!(output_error(&[inf, 1.0], &[-inf, 1.0]).1, inf);
    assert_eq!(output_error(&[1.0, 1.0], &[f32::NAN, 1.0]).1, inf);
    // An all-zero reference falls back to the smallest normal fp16 as the floor.
    let floor = f16::MIN_POSITIVE.to_f32();
    assert_eq!(output_error(&[0.0, 1e-3], &[0.0, 0.0]).1, 1e-3 / floor);
}

#[test]
fn random_inputs_are_seeded_fp16_exact_and_in_range() {
    let bundle = kernel();
    let k = cpu(Precision::F32)
        .compile(&bundle.program, &bundle.weights)
        .unwrap();
    let a = random_inputs(k.as_ref(), SEED);
    assert_eq!(a, random_inputs(k.as_ref(), SEED));
    assert_ne!(a, random_inputs(k.as_ref(), SEED + 1));
    assert_eq!(a.len(), 1);
    assert_eq!(a[0].len(), 64 * 32);
    let (lo, hi) = INPUT_RANGE;
    for &v in &a[0] {
        assert!((lo..=hi).contains(&v), "{v}");
        assert_eq!(f16::from_f32(v).to_f32(), v, "{v} is not fp16-exact");
    }
    // Uniform on [-1, 1]: the mean of 2048 draws is within 0.05 of 0 (4 standard errors).
    let mean = a[0].iter().sum::<f32>() / a[0].len() as f32;
    assert!(mean.abs() < 0.05, "mean {mean}");
}
