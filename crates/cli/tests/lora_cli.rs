//! LoRA training end to end through the binary: a tiny model pretrained and exported as a
//! Hugging Face directory, then `train --init-from BASE --lora-rank 4` on the MIL kernels (CPU
//! device). Checked against independent expectations: the loss falls; the run directory holds
//! the adapter and no base weights; `--resume` continues bit-exactly; the adapter written by
//! `export --format peft`, fused here with plain loops or read back by `eval --adapter`, gives
//! the run's own eval loss; `export
//! --format hf` gives the logits of base + adapter; and bad flags or a changed base are errors.

mod common;
use common::{anetrain, arg, eval_loss, fails_with, fused_by_hand, max_abs_diff, ok, stdout};

use std::path::{Path, PathBuf};

use anetrain_model::config::ModelConfig;
use anetrain_model::hf::{load_hf_dir, save_hf_dir};
use anetrain_model::lora::load_adapter;
use anetrain_model::params::Params;
use anetrain_model::reference::model::forward;
use anetrain_model::train::metrics::read_metrics;

/// Flags shared by every run here: tiny sequences of a small synthetic corpus, no sample.
const FAST: &[&str] = &[
    "--data",
    "synthetic:20000",
    "--seq",
    "16",
    "--batch",
    "2",
    "--eval-every",
    "0",
    "--sample-tokens",
    "0",
    "--warmup",
    "0",
];

fn train(out: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["train", "--out", arg(out)];
    args.extend_from_slice(FAST);
    args.extend_from_slice(extra);
    anetrain(&args)
}

/// Runs `train` and returns its stdout.
fn train_ok(out: &Path, extra: &[&str]) -> String {
    let o = train(out, extra);
    assert!(
        o.status.success(),
        "train {extra:?} failed:\n{}{}",
        stdout(&o),
        common::stderr(&o)
    );
    stdout(&o)
}

/// A pretrained tiny base as a Hugging Face directory (the form users bring).
fn base(dir: &Path) -> PathBuf {
    let pre = dir.join("pre");
    train_ok(
        &pre,
        &["--model", "tiny", "--steps", "3", "--device", "reference"],
    );
    let hf = dir.join("base");
    ok(&["export", arg(&pre), "--format", "hf", "--out", arg(&hf)]);
    hf
}

fn ckpt(run: &Path, step: u64) -> PathBuf {
    run.join(format!("ckpt-{step:08}"))
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let dst = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &dst);
        } else {
            std::fs::copy(entry.path(), dst).unwrap();
        }
    }
}

/// The HF model `export --format hf` wrote to `fused_dir` gives the logits of `by_hand`
/// (base + adapter fused here, independently of the exporter).
fn assert_fused_logits(config: &ModelConfig, fused_dir: &Path, by_hand: &Params) {
    let (_, fused) = load_hf_dir(fused_dir).unwrap();
    let tokens = vec![vec![3, 17, 5, 9, 30, 2, 11, 8]];
    let got = forward(config, &fused, &tokens).unwrap();
    let want = forward(config, by_hand, &tokens).unwrap();
    let worst = max_abs_diff(&got.data, &want.data);
    assert!(worst < 1e-5, "fused logits differ by {worst}");
}

fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum()
}

const LORA: &[&str] = &[
    "--lora-rank",
    "4",
    "--lora-targets",
    "all",
    "--lr",
    "1e-2",
    "--device",
    "cpu",
];

#[test]
fn lora_training_runs_resumes_exports_and_fuses() {
    let tmp = tempfile::tempdir().unwrap();
    let base = base(tmp.path());
    let base_arg = ["--init-from", arg(&base)];

    let run = tmp.path().join("lora");
    let mut flags = base_arg.to_vec();
    flags.extend_from_slice(LORA);
    flags.extend_from_slice(&["--steps", "12", "--save-every", "6"]);
    let printed = train_ok(&run, &flags);
    // Only the adapter trains: rank 4 on all seven projections of every layer, r·(in + out)
    // each.
    let (c, _) = load_hf_dir(&base).unwrap();
    let (d, q, kv, h) = (c.dim, c.q_dim(), c.kv_dim(), c.hidden_dim);
    let per_layer = 4 * ((d + q) + 2 * (d + kv) + (q + d) + 2 * (d + h) + (h + d));
    let trainable = format!("training {} parameters", per_layer * c.n_layers);
    assert!(
        printed.contains(&trainable),
        "want `{trainable}` in:\n{printed}"
    );

    let metrics = read_metrics(&run.join("metrics.jsonl")).unwrap();
    assert_eq!(metrics.len(), 12);
    assert!(metrics.iter().all(|m| m.loss.is_finite() && !m.skipped));

    // The checkpoint is an adapter directory: no base weights, only A and B with their two
    // AdamW moments (12 bytes per adapter parameter) plus headers and metadata.
    let saved = ckpt(&run, 12);
    for file in [
        "adapter_config.json",
        "adapter_model.safetensors",
        "optimizer.safetensors",
        "meta.json",
    ] {
        assert!(saved.join(file).is_file(), "{file} missing");
    }
    assert!(!saved.join("model.safetensors").exists());
    let base_bytes = std::fs::metadata(base.join("model.safetensors"))
        .unwrap()
        .len();
    let (config, base_params) = load_hf_dir(&base).unwrap();
    let (saved_adapter, _) = load_adapter(&saved, &config).unwrap();
    let expected = 12 * saved_adapter.num_params() as u64;
    let size = dir_bytes(&saved);
    assert!(
        size < expected + 32 * 1024 && size * 2 < base_bytes,
        "checkpoint {size} bytes: adapter state {expected}, base {base_bytes}"
    );

    // Stopped after step 6 (its checkpoint kept, the later one gone) and resumed: the same
    // adapter, to the byte, as the run that went straight on.
    let split = tmp.path().join("split");
    copy_dir(&run, &split);
    std::fs::remove_dir_all(ckpt(&split, 12)).unwrap();
    let mut resume = LORA[4..].to_vec();
    resume.extend_from_slice(&["--resume", "--steps", "12"]);
    train_ok(&split, &resume);
    let bytes =
        |run: &Path| std::fs::read(ckpt(run, 12).join("adapter_model.safetensors")).unwrap();
    assert!(bytes(&split) == bytes(&run), "the resumed adapter differs");

    // export --format peft, fused here by hand: the same loss as the run itself evaluates to.
    let peft = tmp.path().join("peft");
    ok(&["export", arg(&run), "--format", "peft", "--out", arg(&peft)]);
    let (adapter, _) = load_adapter(&peft, &config).unwrap();
    assert_eq!(adapter, saved_adapter);
    assert_eq!(adapter.config().rank, 4);
    let by_hand = fused_by_hand(&config, &base_params, &adapter);
    let by_hand_dir = tmp.path().join("by-hand");
    save_hf_dir(&by_hand_dir, &config, &by_hand, None).unwrap();
    let eval_with = |model: &Path, extra: &[&str]| {
        let mut args = vec![
            "--model",
            arg(model),
            "--data",
            "synthetic:3000",
            "--tokenizer",
            "byte",
            "--seq",
            "16",
            "--device",
            "reference",
        ];
        args.extend_from_slice(extra);
        eval_loss(&args)
    };
    let eval = |model: &Path| eval_with(model, &[]);
    let (run_loss, hand_loss) = (eval(&run), eval(&by_hand_dir));
    assert!(
        (run_loss - hand_loss).abs() < 1e-5,
        "run {run_loss} vs fused by hand {hand_loss}"
    );
    // The exported adapter read back by `eval --adapter` on the base: the run's loss again.
    let with_adapter = eval_with(&base, &["--adapter", arg(&peft)]);
    assert!(
        (with_adapter - run_loss).abs() < 1e-5,
        "eval --adapter {with_adapter} vs the run {run_loss}"
    );
    // The same held-out tokens, before and after: the adapter learned.
    let base_loss = eval(&base);
    assert!(
        run_loss < base_loss - 0.05,
        "the loss did not fall: base {base_loss}, adapted {run_loss}"
    );

    // export --format hf writes base + adapter fused: its logits are those of base + adapter.
    let fused_dir = tmp.path().join("fused");
    ok(&[
        "export",
        arg(&run),
        "--format",
        "hf",
        "--out",
        arg(&fused_dir),
    ]);
    assert_fused_logits(&config, &fused_dir, &by_hand);

    // Continuing the exported adapter with --adapter takes its shape; a clashing rank is named.
    let more = tmp.path().join("more");
    let mut cont = base_arg.to_vec();
    cont.extend_from_slice(&["--adapter", arg(&peft), "--steps", "1", "--device", "cpu"]);
    train_ok(&more, &cont);
    let mut clash = vec!["train", "--out", "unused"];
    clash.extend_from_slice(&base_arg);
    clash.extend_from_slice(&["--adapter", arg(&peft), "--lora-rank", "8"]);
    fails_with(&clash, "--lora-rank 8");
}

#[test]
fn lora_flags_and_a_changed_base_are_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("x");
    fails_with(
        &["train", "--out", arg(&out), "--lora-rank", "4"],
        "--init-from",
    );
    let base = base(tmp.path());
    let unknown = [
        "train",
        "--out",
        arg(&out),
        "--init-from",
        arg(&base),
        "--lora-targets",
        "q_proj,wq",
        "--tokenizer",
        "byte",
    ];
    fails_with(&unknown, "unknown projection `wq`");

    let run = tmp.path().join("run");
    let mut flags = vec!["--init-from", arg(&base), "--steps", "1"];
    flags.extend_from_slice(LORA);
    train_ok(&run, &flags);
    // The base changes under the run: resuming and evaluating name the recorded base.
    let (config, _) = load_hf_dir(&base).unwrap();
    save_hf_dir(&base, &config, &Params::init(&config, 2).unwrap(), None).unwrap();
    let mut resume = vec!["train", "--out", arg(&run), "--resume", "--steps", "2"];
    resume.extend_from_slice(FAST);
    fails_with(&resume, "restore the original base");
}

/// On a device that stages its own copy of the base (`cpu-f16`, like the ANE) the host frees
/// the base's block matrices after staging: the run still trains as the fp32 CPU device does
/// (within fp16 rounding), samples from the fused model (the base reloaded from its path),
/// and `export --format hf` gives base + adapter fused by hand.
#[test]
fn lora_on_a_device_with_its_own_copy_trains_samples_and_exports() {
    let tmp = tempfile::tempdir().unwrap();
    let base = base(tmp.path());
    let run_on = |device: &str, out: &Path| {
        let mut args = vec![
            "train",
            "--out",
            arg(out),
            "--init-from",
            arg(&base),
            "--tokenizer",
            "byte",
            "--steps",
            "3",
            "--sample-tokens",
            "4",
            "--device",
            device,
        ];
        let without = |flags: &'static [&'static str], skip: &'static str| {
            flags
                .chunks(2)
                .filter(move |f| f[0] != skip)
                .flatten()
                .copied()
        };
        args.extend(without(FAST, "--sample-tokens"));
        args.extend(without(LORA, "--device"));
        let o = anetrain(&args);
        assert!(
            o.status.success(),
            "train on {device} failed:\n{}{}",
            stdout(&o),
            common::stderr(&o)
        );
        assert!(stdout(&o).contains("sample (temperature"), "{}", stdout(&o));
        read_metrics(&out.join("metrics.jsonl")).unwrap()
    };
    let (f16_run, f32_run) = (tmp.path().join("f16"), tmp.path().join("f32"));
    let f16 = run_on("cpu-f16", &f16_run);
    let f32 = run_on("cpu", &f32_run);
    assert_eq!(f16.len(), 3);
    for (a, b) in f16.iter().zip(&f32) {
        assert!(
            (a.loss - b.loss).abs() <= 2e-2 * b.loss.abs(),
            "step {}: loss {} on cpu-f16, {} on cpu",
            a.step,
            a.loss,
            b.loss
        );
    }

    let fused_dir = tmp.path().join("fused");
    ok(&[
        "export",
        arg(&f16_run),
        "--format",
        "hf",
        "--out",
        arg(&fused_dir),
    ]);
    let (config, base_params) = load_hf_dir(&base).unwrap();
    let (adapter, _) = load_adapter(&ckpt(&f16_run, 3), &config).unwrap();
    let by_hand = fused_by_hand(&config, &base_params, &adapter);
    assert_fused_logits(&config, &fused_dir, &by_hand);
}
