//! `anetrain doctor` and `anetrain bench` end to end through the binary.

mod common;
use common::anetrain;

use serde_json::Value;

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The self-test, the training kernels every config has (crates/model/src/kernels) and the
/// decode kernels (crates/model/src/generate/kernels.rs).
const KERNELS: [&str; 15] = [
    "self_test",
    "qkv_fwd",
    "attention_fwd",
    "wo_fwd",
    "ffn_up_fwd",
    "ffn_down_fwd",
    "ffn_down_bwd",
    "ffn_up_bwd",
    "wo_bwd",
    "attention_bwd",
    "qkv_bwd",
    "decode_qkv",
    "decode_attention",
    "decode_wo",
    "decode_ffn",
];

#[test]
fn doctor_json_reports_both_devices_for_every_kernel() {
    let out = anetrain(&["doctor", "--model", "tiny", "--seq", "32", "--json"]);
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).expect("stdout is one JSON object");
    assert_eq!(report["ok"], Value::Bool(true));
    assert_eq!(report["seq"], 32);
    assert_eq!(report["reference"], "cpu (f32)");
    let kernels = report["kernels"].as_array().expect("a kernels array");
    let names: Vec<&str> = kernels
        .iter()
        .map(|k| k["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, KERNELS);
    for k in kernels {
        for field in ["compile_ms", "run_ms"] {
            let pair = k[field].as_array().expect("a [reference, candidate] pair");
            assert_eq!(pair.len(), 2);
            assert!(
                pair.iter().all(|t| t.as_f64().is_some_and(|t| t >= 0.0)),
                "{k}"
            );
        }
        assert_eq!(k["verdict"], "pass", "{k}");
        let rel = k["max_rel"].as_f64().expect("max_rel is a number");
        let tol = report["tolerance"]["max_rel"].as_f64().unwrap();
        assert!((0.0..=tol).contains(&rel), "{k}");
    }
    if cfg!(not(all(target_os = "macos", target_arch = "aarch64"))) {
        assert_eq!(report["candidate"], "cpu (f16)");
        assert_eq!(report["system"]["ane"]["available"], Value::Bool(false));
        // fp16 rounding must show on the fp16 CPU: a zero error would mean no comparison ran.
        assert!(kernels.iter().any(|k| k["max_rel"].as_f64().unwrap() > 0.0));
    }
}

#[test]
fn doctor_text_says_plainly_when_there_is_no_ane() {
    let out = anetrain(&["doctor", "--model", "tiny", "--seq", "32"]);
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("all 15 kernels agree"), "{stdout}");
    if cfg!(not(all(target_os = "macos", target_arch = "aarch64"))) {
        assert!(stdout.contains("no Apple Neural Engine here"), "{stdout}");
        assert!(stdout.contains("running the CPU half only"), "{stdout}");
    }
}

#[test]
fn doctor_rejects_an_unknown_model() {
    let out = anetrain(&["doctor", "--model", "no-such-model"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("no-such-model") && stderr.contains("preset"),
        "{stderr}"
    );
}

#[cfg(not(all(target_os = "macos", target_arch = "aarch64")))]
#[test]
fn ane_is_a_clear_error_off_apple_silicon() {
    let out = anetrain(&["bench", "dispatch", "--device", "ane", "--runs", "3"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("device `ane` is not usable here"),
        "{stderr}"
    );
    assert!(stderr.contains("only available on macOS"), "{stderr}");

    let out = anetrain(&["doctor", "--probe"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("needs a Mac"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn bench_dispatch_runs_and_reports_latency() {
    let out = anetrain(&["bench", "dispatch", "--device", "cpu", "--runs", "20"]);
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("device: cpu"), "{stdout}");
    assert!(
        stdout.contains("20 runs") && stdout.contains("median"),
        "{stdout}"
    );
}

#[test]
fn bench_int8_compares_with_fp16_on_a_small_stack() {
    let args = [
        "--device",
        "cpu",
        "--layers",
        "2",
        "--channels",
        "64",
        "--spatial",
        "8",
    ];
    let out = anetrain(&[&["bench", "int8"], &args[..]].concat());
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    let stdout = text(&out.stdout);
    // The fp32 CPU device computes the "fp16" stack in fp32, and says so.
    assert!(stdout.contains("fp32: 2 x conv 64ch on 8x8"), "{stdout}");
    assert!(
        stdout.contains("int8 W8A8:") && stdout.contains("speed-up over fp32"),
        "{stdout}"
    );
    assert!(stdout.contains("GFLOPS"), "{stdout}");
}

/// Each kernel runs in a child process, so a child that crashes, hangs or prints garbage costs
/// exactly its own row: every other kernel still compares (here on the fp16 CPU, with the
/// failures injected through a hidden test flag).
#[test]
fn a_crashing_hanging_or_garbled_kernel_process_fails_only_its_own_row() {
    for (kernel, how, expected) in [
        ("wo_fwd", "crash", "crashed"),
        ("decode_ffn", "garble", "without a result"),
        ("attention_bwd", "hang", "hung and was killed after 3 s"),
    ] {
        let inject = format!("{kernel}:{how}");
        let out = anetrain(&[
            "doctor",
            "--model",
            "tiny",
            "--seq",
            "32",
            "--json",
            "--device",
            "cpu-f16",
            "--inject-failure",
            &inject,
            "--child-timeout",
            "3",
        ]);
        assert_eq!(out.status.code(), Some(1), "{how}: {}", text(&out.stderr));
        let report: Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
        assert_eq!(report["ok"], Value::Bool(false));
        let kernels = report["kernels"].as_array().unwrap();
        assert_eq!(kernels.len(), KERNELS.len());
        for k in kernels {
            if k["name"] == kernel {
                assert_eq!(k["verdict"], "failed", "{k}");
                let error = k["error"].as_str().unwrap();
                assert!(error.contains(expected), "{how}: {error}");
            } else {
                assert_eq!(k["verdict"], "pass", "{how}: {k}");
            }
        }
    }
}

#[test]
fn a_bad_injection_is_refused_with_the_accepted_forms() {
    let out = anetrain(&[
        "doctor",
        "--model",
        "tiny",
        "--seq",
        "32",
        "--kernel-one",
        "wo_fwd",
        "--device",
        "cpu",
        "--inject-failure",
        "wo_fwd:explode",
    ]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("NAME:crash, NAME:hang or NAME:garble"),
        "{}",
        text(&out.stderr)
    );
}
