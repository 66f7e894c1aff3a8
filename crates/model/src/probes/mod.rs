//! The probe catalog of `anetrain doctor --probe` and what its results mean: which disputed ANE
//! rules hold on a chip and macOS (ane-reference §5, §9, §10), and which kernel forms work.
//!
//! Each rule probe is a small kernel that breaks one catalog rule (or, for a baseline, none),
//! anchored by a 1×1 conv that mixes neighbouring channels so a mis-strided or mis-ordered
//! buffer moves whole elements. Every port holds at least 48 KiB and has a last axis that is a
//! multiple of 32 unless the probe is about exactly that, so a probe fails for its own rule
//! and not for another. Form probes are built by the generator that emits the form
//! ([`crate::kernels::KernelForms`]).
//!
//! Reading the results: a probe that compiled, ran and matched refutes its rule on this
//! machine; any other outcome confirms it (the construct does not give right numbers here,
//! whatever the reason). That inference needs the baselines to pass, which
//! [`measured_rules`] insists on. Running probes (in child processes) is the CLI's job.

use anetrain_device::ane::capabilities::{Capabilities, Probe};
use anetrain_mil::check::MeasuredRules;

use crate::error::{ModelError, Result};

mod catalog;

pub use catalog::{find, matrix, ProbeSpec, BASELINE};

/// The rules a capability file settles, for the constraint checker. Refuses a file whose
/// baseline did not pass: then every probe fails for the same reason and says nothing about
/// its own rule.
pub fn measured_rules(caps: &Capabilities) -> Result<MeasuredRules> {
    let baseline = caps.probes.iter().find(|p| p.op == BASELINE);
    match baseline {
        Some(p) if p.compiled && p.ran => {}
        Some(p) => {
            return Err(ModelError::Options(format!(
                "the `{BASELINE}` probe failed on {} ({}), so the other probes' failures say \
                 nothing about their rules; fix that first (`anetrain doctor` compares every \
                 kernel), then probe again",
                caps.chip,
                p.error.as_deref().unwrap_or("no message")
            )))
        }
        None => {
            return Err(ModelError::Options(format!(
                "the capability file has no `{BASELINE}` result, without which no failure can \
                 be blamed on its rule; run `anetrain doctor --probe` again"
            )))
        }
    }
    let specs = matrix();
    let rule_of = |p: &Probe| specs.iter().find(|s| s.id == p.op).and_then(|s| s.rule);
    caps.measured_rules(rule_of)
        .map_err(|e| ModelError::Options(format!("the capability file is unusable: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use anetrain_device::compare::{output_error, Tolerance};
    use anetrain_device::{CpuDevice, Device, Precision};
    use anetrain_mil::check::{check_with, Applies};
    use anetrain_mil::{Bundle, Chip};
    use catalog::sdpa;

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
