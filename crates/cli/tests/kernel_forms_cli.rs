//! Kernel forms chosen by a capability file, through the binary: a file (written here, as
//! `anetrain doctor --probe` would on a Mac) that marks the proven dynamic-matmul form failed
//! and its alternative working makes `mil dump` emit the alternative, which computes what the
//! proven form computes; one that leaves no working form stops `mil dump`, `train` and
//! `generate` on the ANE before any work, naming the form and `doctor --probe`; the CPU
//! devices ignore the file.

mod common;
use common::{anetrain, arg, stderr, stdout};

use anetrain_mil::{parse_program, Literal, Op, Scalar, TensorData};
use serde_json::json;
use std::path::{Path, PathBuf};

/// A capability file whose baseline passed, with `(probe id, passed)` results.
fn capabilities(dir: &Path, results: &[(&str, bool)]) -> PathBuf {
    let mut probes = vec![json!({
        "op": "baseline", "dtype": "fp16", "width": 64, "compiled": true, "ran": true
    })];
    for &(id, passed) in results {
        let mut p = json!({
            "op": id, "dtype": "fp16", "width": 64, "compiled": passed, "ran": passed
        });
        if !passed {
            p["error"] = json!("_ANECompiler : ANECCompile() FAILED");
        }
        probes.push(p);
    }
    let file = json!({ "version": 1, "chip": "H16G", "macos": "Version 15.3", "probes": probes });
    let path = dir.join("caps.json");
    std::fs::write(&path, serde_json::to_string_pretty(&file).unwrap()).unwrap();
    path
}

fn dump(out: &Path, caps: Option<&Path>) -> std::process::Output {
    let mut args = vec!["mil", "dump", "--model", "tiny", "--seq", "32", "--out"];
    args.push(arg(out));
    if let Some(caps) = caps {
        args.extend(["--capabilities", arg(caps)]);
    }
    anetrain(&args)
}

/// Whether some matmul of the dumped kernel sets `transpose_x`.
fn sets_transpose_x(mil: &str) -> bool {
    let program = parse_program(mil).unwrap();
    let f = program.main().unwrap();
    f.ops.iter().filter(|op| op.op == Op::Matmul).any(|op| {
        let flag = op.arg_value("transpose_x").and_then(|n| f.producer(n));
        matches!(
            flag.and_then(|c| c.attr("val")),
            Some(Literal::Scalar(Scalar::Bool(true)))
        ) || matches!(
            flag.and_then(|c| c.attr("val")),
            Some(Literal::Tensor { data: TensorData::Bool(b), .. }) if b.first() == Some(&true)
        )
    })
}

/// `min max mean std` of output `y` as `mil run` prints them for seeded random inputs.
fn run_stats(kernel: &Path) -> Vec<f64> {
    let file = kernel.join("model.mil");
    let out = anetrain(&["mil", "run", arg(&file), "--random-inputs", "--seed", "3"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let line = text
        .lines()
        .find(|l| l.starts_with("y:"))
        .unwrap_or_else(|| panic!("no output line in {text}"));
    let words: Vec<&str> = line.split_whitespace().collect();
    ["min", "max", "mean", "std"]
        .iter()
        .map(|key| {
            let at = words.iter().position(|w| w == key).unwrap();
            words[at + 1].parse().unwrap()
        })
        .collect()
}

#[test]
fn a_failed_default_form_with_a_working_alternative_dumps_the_alternative() {
    let dir = tempfile::tempdir().unwrap();
    let caps = capabilities(
        dir.path(),
        &[
            ("form-matmul-transposes", false),
            ("form-matmul-transpose-flag", true),
        ],
    );
    let (proven, fallback) = (dir.path().join("proven"), dir.path().join("fallback"));
    let o = dump(&proven, None);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("kernel form: dynamic matmul: transpose + matmul + transpose"),
        "{}",
        stdout(&o)
    );
    let o = dump(&fallback, Some(&caps));
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(
        text.contains("kernel form: dynamic matmul: matmul(transpose_x) on a rectangular operand"),
        "{text}"
    );
    // The row sum's default was not marked failed, so it stays.
    assert!(
        text.contains("kernel form: attention row sum: reduce_sum"),
        "{text}"
    );
    for kernel in ["qkv_fwd", "ffn_up_fwd", "decode_qkv"] {
        let read = |root: &Path| std::fs::read_to_string(root.join(kernel).join("model.mil"));
        assert!(!sets_transpose_x(&read(&proven).unwrap()), "{kernel}");
        assert!(sets_transpose_x(&read(&fallback).unwrap()), "{kernel}");
        // Same inputs, same numbers: the fallback computes what the proven form does.
        let (a, b) = (
            run_stats(&proven.join(kernel)),
            run_stats(&fallback.join(kernel)),
        );
        for (x, y) in a.iter().zip(&b) {
            assert!(
                (x - y).abs() <= 1e-5 * (1.0 + x.abs()),
                "{kernel}: {a:?} vs {b:?}"
            );
        }
    }
}

#[test]
fn no_working_form_stops_dump_train_and_generate_before_any_work() {
    let dir = tempfile::tempdir().unwrap();
    let caps = capabilities(
        dir.path(),
        &[
            ("form-matmul-transposes", false),
            ("form-matmul-transpose-flag", false),
        ],
    );
    let expect = |o: &std::process::Output, what: &str| {
        let err = stderr(o);
        assert!(!o.status.success(), "{what} must fail");
        assert!(!err.contains("panicked"), "{what}: {err}");
        assert!(
            err.contains("dynamic matmul form `transpose + matmul + transpose` failed")
                && err.contains("form-matmul-transposes")
                && err.contains("`anetrain doctor --probe`"),
            "{what}: {err}"
        );
    };
    let out = dir.path().join("dump");
    expect(&dump(&out, Some(&caps)), "mil dump");
    assert!(!out.exists(), "nothing is dumped");

    let run = dir.path().join("run");
    let o = anetrain(&[
        "train",
        "--out",
        arg(&run),
        "--model",
        "tiny",
        "--data",
        "synthetic:2000",
        "--seq",
        "16",
        "--batch",
        "2",
        "--steps",
        "2",
        "--device",
        "ane",
        "--capabilities",
        arg(&caps),
    ]);
    expect(&o, "train");
    assert!(!run.exists(), "no run directory is started");
    let generate = |device: &str| {
        anetrain(&[
            "generate",
            "--model",
            "tiny",
            "--tokenizer",
            "byte",
            "--prompt",
            "Once",
            "--max-tokens",
            "2",
            "--device",
            device,
            "--capabilities",
            arg(&caps),
        ])
    };
    expect(&generate("ane"), "generate");
    // The CPU runs every form alike, so the file does not matter there.
    let o = generate("cpu");
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn help_says_the_capability_file_is_ignored_on_the_cpu() {
    for command in ["train", "generate", "eval"] {
        let o = anetrain(&[command, "--help"]);
        let help = stdout(&o).split_whitespace().collect::<Vec<_>>().join(" ");
        assert!(
            help.contains("--capabilities <FILE>") && help.contains("ignored on the CPU"),
            "{command}: {help}"
        );
    }
}
