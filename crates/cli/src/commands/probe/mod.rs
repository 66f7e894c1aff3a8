//! `anetrain doctor --probe`: run the probes of [`anetrain_model::probes`] and record the
//! answers in a capability file. A probe runs on the device under test and on the fp32 CPU
//! interpreter with the same inputs; it passes when the outputs agree within
//! [`Tolerance::FP16`].
//!
//! A failed `ANECCompile` cannot be recovered in-process (§1.7), so `anetrain doctor --probe`
//! (in `doctor`) runs each probe in a child, `anetrain doctor --probe-one ID` ([`probe_one`]),
//! which prints one JSON line ([`parse_outcome`] reads it back).

use anetrain_device::ane::capabilities::Probe;
use anetrain_device::ane::{ConstraintCheck, SurfacePolicy};
use anetrain_device::compare::{compare_on, Tolerance, Verdict};
use anetrain_device::{AneDevice, CpuDevice, Device, Precision};
use anetrain_mil::{Bundle, DType};
use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Value};
use std::process::ExitCode;

pub use anetrain_model::probes::{find, matrix, measured_rules, ProbeSpec};

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
    // Probes break catalog rules on purpose: that is what they measure.
    Ok(Box::new(
        ane.with_surface_policy(PROBE_POLICY)
            .with_constraint_check(ConstraintCheck::Off),
    ))
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
