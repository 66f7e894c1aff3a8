//! `anetrain doctor --probe` and its child mode `--probe-one` through the binary. The child
//! runs on the CPU here (`--device cpu-f16`, every op rounded to fp16 like the ANE), which
//! exercises everything but the ANE itself: building each probe, running it against the fp32
//! reference, and the one-line JSON the parent reads.

mod common;
use common::anetrain;

use serde_json::Value;

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Every probe id with the catalog rule it breaks, its I/O dtype and width: ids are stable,
/// since capability files written by earlier runs record results under them.
const PROBES: [(&str, Option<&str>, &str, u64); 34] = [
    ("baseline", None, "fp16", 64),
    ("width-32", None, "fp16", 32),
    ("tanh", None, "fp16", 64),
    ("reduce_sum", None, "fp16", 64),
    ("fp32-io", None, "fp32", 64),
    ("int8-weight", None, "fp16", 64),
    ("width-16", Some("io-width-multiple-of-32"), "fp16", 16),
    ("width-48", Some("io-width-multiple-of-32"), "fp16", 48),
    ("width-100", Some("io-width-multiple-of-32"), "fp16", 100),
    ("width-4082", Some("io-width-multiple-of-32"), "fp16", 4082),
    ("min-bytes-3k", Some("io-min-bytes"), "fp16", 32),
    ("min-bytes-16k", Some("io-min-bytes"), "fp16", 32),
    ("gelu", Some("gelu"), "fp16", 64),
    ("gelu-tanh", Some("gelu"), "fp16", 64),
    ("exp", Some("transcendentals"), "fp16", 64),
    ("log", Some("transcendentals"), "fp16", 64),
    ("sqrt", Some("transcendentals"), "fp16", 64),
    ("reduce_mean", Some("reduce-mean-m5"), "fp16", 64),
    ("concat", Some("concat"), "fp16", 64),
    (
        "slice-concat-width-offset",
        Some("width-offset-slice-concat"),
        "fp16",
        64,
    ),
    (
        "slice-width-offset-range",
        Some("width-offset-slice-range"),
        "fp16",
        64,
    ),
    (
        "int8-weight-range",
        Some("int8-weight-activation-range"),
        "fp16",
        64,
    ),
    ("fp32-compute", Some("fp16-compute"), "fp32", 64),
    (
        "conv-kernel-width-14",
        Some("conv-kernel-width-14"),
        "fp16",
        512,
    ),
    (
        "conv-kernel-width-16",
        Some("conv-kernel-width-16"),
        "fp16",
        512,
    ),
    (
        "conv-input-channels-8256",
        Some("conv-input-channels-8192"),
        "fp16",
        64,
    ),
    ("rank2-io", Some("io-rank"), "fp16", 64),
    ("two-inputs-unequal", Some("equal-input-sizes"), "fp16", 64),
    (
        "two-outputs-unequal",
        Some("equal-output-sizes"),
        "fp16",
        64,
    ),
    ("sdpa-mask", Some("sdpa-mask-ignored"), "fp16", 64),
    ("form-matmul-transposes", None, "fp16", 448),
    ("form-matmul-transpose-flag", None, "fp16", 448),
    ("form-row-sum-reduce", None, "fp16", 64),
    ("form-row-sum-ones-matmul", None, "fp16", 64),
];

/// Runs `--probe-one id` on `device` and returns its one JSON line.
fn probe_one(id: &str, device: &str) -> Value {
    let out = anetrain(&["doctor", "--probe-one", id, "--device", device]);
    assert!(out.status.success(), "{id}: {}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert_eq!(
        stdout.lines().count(),
        1,
        "{id}: one line expected: {stdout}"
    );
    serde_json::from_str(&stdout).expect("the line is JSON")
}

#[test]
fn every_probe_runs_on_the_fp16_cpu_and_agrees_with_the_fp32_reference() {
    for (id, rule, dtype, width) in PROBES {
        let line = probe_one(id, "cpu-f16");
        assert_eq!(line["id"], id);
        assert_eq!(line["rule"].as_str(), rule, "{line}");
        assert_eq!(line["dtype"], dtype, "{line}");
        assert_eq!(line["width"], width, "{line}");
        assert_eq!(line["device"], "cpu (f16)");
        // A correct fp16 device passes every probe: a failure on the ANE is then the ANE's.
        assert_eq!(line["compiled"], true, "{line}");
        assert_eq!(line["ran"], true, "{line}");
        assert_eq!(line["error"], Value::Null, "{line}");
        assert!(line["max_rel"].as_f64().is_some_and(|e| e < 5e-2), "{line}");
    }
}

#[test]
fn the_fp32_cpu_matches_its_own_reference_exactly() {
    let line = probe_one("baseline", "cpu");
    assert_eq!(line["ran"], true, "{line}");
    assert_eq!(line["max_rel"], 0.0, "{line}");
}

#[test]
fn an_unknown_probe_lists_the_ids() {
    let out = anetrain(&["doctor", "--probe-one", "softplus", "--device", "cpu"]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(err.contains("no probe `softplus`"), "{err}");
    assert!(
        err.contains("baseline") && err.contains("sdpa-mask"),
        "{err}"
    );
}

#[test]
fn an_unknown_probe_device_names_the_choices() {
    let out = anetrain(&["doctor", "--probe-one", "baseline", "--device", "gpu"]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(err.contains("`gpu`") && err.contains("cpu-f16"), "{err}");
}

#[test]
fn capabilities_needs_probe() {
    let out = anetrain(&["doctor", "--capabilities", "caps.json"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("--probe"),
        "{}",
        text(&out.stderr)
    );
}

#[cfg(not(all(target_os = "macos", target_arch = "aarch64")))]
#[test]
fn probing_without_an_ane_says_it_needs_a_mac_and_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("caps.json");
    let out = anetrain(&[
        "doctor",
        "--probe",
        "--capabilities",
        file.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(err.contains("needs a Mac"), "{err}");
    assert!(
        !file.exists(),
        "no capability file is written without measurements"
    );
}
