//! `anetrain train/eval/import/export` end to end on a tiny model and a small synthetic corpus.

mod common;
use common::{anetrain, stderr, stdout};

use std::path::Path;
use std::process::{Command, Output};

use anetrain_model::train::checkpoint::latest_checkpoint;
use anetrain_model::train::metrics::read_metrics;
use anetrain_model::train::Checkpoint;

/// Flags of a fast run: the tiny model, 16-token sequences, a 20k-token corpus.
const FAST: &[&str] = &[
    "--data",
    "synthetic:20000",
    "--seq",
    "16",
    "--batch",
    "2",
    "--eval-every",
    "2",
    "--eval-batches",
    "2",
    "--sample-tokens",
    "5",
];

fn train(out: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["train", "--out", out.to_str().unwrap()];
    args.extend_from_slice(FAST);
    args.extend_from_slice(extra);
    anetrain(&args)
}

#[test]
fn train_writes_checkpoint_and_metrics_and_resume_continues_to_the_total() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let o = train(&run, &["--steps", "3", "--device", "reference"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("sample"), "{}", stdout(&o));
    let ckpt = run.join("ckpt-00000003");
    for file in ["model.safetensors", "optimizer.safetensors", "meta.json"] {
        assert!(ckpt.join(file).is_file(), "{file} missing");
    }
    assert!(run.join("run.json").is_file());
    let metrics = read_metrics(&run.join("metrics.jsonl")).unwrap();
    assert_eq!(
        metrics.iter().map(|m| m.step).collect::<Vec<_>>(),
        [1, 2, 3]
    );
    assert!(metrics
        .iter()
        .all(|m| m.loss.is_finite() && m.tokens_per_s > 0.0));
    assert!(metrics[1].val_loss.is_some() && metrics[0].val_loss.is_none());
    let raw = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    let first: serde_json::Value = serde_json::from_str(raw.lines().next().unwrap()).unwrap();
    for key in [
        "step",
        "loss",
        "lr",
        "grad_norm",
        "loss_scale",
        "skipped",
        "tokens_per_s",
        "elapsed_s",
    ] {
        assert!(
            first.get(key).is_some(),
            "metrics line lacks `{key}`: {first}"
        );
    }

    // A new run into the same directory is refused rather than overwriting the checkpoint.
    let o = train(&run, &["--steps", "3", "--device", "reference"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("--resume"), "{}", stderr(&o));

    // --steps is the total: resuming with 5 trains 2 more steps.
    let o = train(&run, &["--resume", "--steps", "5", "--device", "reference"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let metrics = read_metrics(&run.join("metrics.jsonl")).unwrap();
    assert_eq!(
        metrics.iter().map(|m| m.step).collect::<Vec<_>>(),
        [1, 2, 3, 4, 5]
    );
    let latest = latest_checkpoint(&run).unwrap().unwrap();
    assert_eq!(Checkpoint::load(&latest).unwrap().meta.step, 5);
    // run.json, which the dashboard reads for the total, follows the resumed run's settings.
    let run_json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("run.json")).unwrap()).unwrap();
    assert_eq!(run_json["options"]["steps"], 5, "{run_json}");

    // A resumed run keeps what it trains: LoRA flags are refused by name.
    let o = train(
        &run,
        &["--resume", "--lora-rank", "4", "--device", "reference"],
    );
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("drop the LoRA settings (--lora-*"),
        "{}",
        stderr(&o)
    );

    // Changing the batch shape on resume is refused by flag name.
    let o = train(
        &run,
        &[
            "--resume",
            "--steps",
            "6",
            "--accum",
            "3",
            "--device",
            "reference",
        ],
    );
    assert!(!o.status.success());
    assert!(stderr(&o).contains("--accum is 3"), "{}", stderr(&o));
}

#[test]
fn eval_json_export_and_import_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    // The default device: on Linux, auto picks the CPU kernels.
    let o = train(&run, &["--steps", "2"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("device: auto"), "{}", stdout(&o));

    let o = anetrain(&[
        "eval",
        "--model",
        run.to_str().unwrap(),
        "--data",
        "synthetic:3000",
        "--seq",
        "16",
        "--device",
        "reference",
        "--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    let loss = v["loss"].as_f64().unwrap();
    assert!(loss > 0.0 && loss < 6.0, "{v}");
    assert!((v["perplexity"].as_f64().unwrap() - loss.exp()).abs() < 1e-3 * loss.exp());
    // 3000+ synthetic tokens in samples of 16 + 1: every full sample, 16 targets each.
    assert_eq!(v["tokens"].as_u64().unwrap() % 16, 0);
    assert!(v["tokens"].as_u64().unwrap() >= 2990 / 16 * 16);

    let hf = dir.path().join("hf");
    let o = anetrain(&[
        "export",
        run.to_str().unwrap(),
        "--format",
        "hf",
        "--out",
        hf.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(hf.join("config.json").is_file() && hf.join("model.safetensors").is_file());
    let back = dir.path().join("imported");
    let o = anetrain(&[
        "import",
        hf.to_str().unwrap(),
        "--out",
        back.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let original = Checkpoint::load(&latest_checkpoint(&run).unwrap().unwrap()).unwrap();
    let imported = Checkpoint::load(&latest_checkpoint(&back).unwrap().unwrap()).unwrap();
    assert_eq!(imported.config, original.config);
    assert_eq!(imported.params, original.params);

    // The same through llama2.c's format.
    let bin = dir.path().join("model.bin");
    let o = anetrain(&[
        "export",
        run.to_str().unwrap(),
        "--format",
        "llama2c",
        "--out",
        bin.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let from_bin = dir.path().join("from-bin");
    let o = anetrain(&[
        "import",
        bin.to_str().unwrap(),
        "--out",
        from_bin.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let imported = Checkpoint::load(&latest_checkpoint(&from_bin).unwrap().unwrap()).unwrap();
    assert_eq!(imported.params, original.params);

    // The imported run cannot be resumed (no optimizer state), but can seed a new run.
    let o = train(
        &back,
        &["--resume", "--steps", "2", "--device", "reference"],
    );
    assert!(!o.status.success());
    assert!(stderr(&o).contains("--init-from"), "{}", stderr(&o));
    let fine = dir.path().join("fine");
    let o = train(
        &fine,
        &[
            "--init-from",
            back.to_str().unwrap(),
            "--steps",
            "1",
            "--device",
            "reference",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn token_ids_outside_the_vocabulary_are_an_error_naming_the_position() {
    let dir = tempfile::tempdir().unwrap();
    let shard = dir.path().join("bad.bin");
    let mut ids: Vec<u16> = (0..2000).map(|i| (i % 250) as u16).collect();
    ids[1234] = 1000;
    let bytes: Vec<u8> = ids.iter().flat_map(|t| t.to_le_bytes()).collect();
    std::fs::write(&shard, bytes).unwrap();
    let run = dir.path().join("run");
    let o = anetrain(&[
        "train",
        "--out",
        run.to_str().unwrap(),
        "--data",
        shard.to_str().unwrap(),
        "--seq",
        "16",
        "--steps",
        "1",
        "--device",
        "reference",
    ]);
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(
        err.contains("1000") && err.contains("1234") && err.contains("--tokenizer"),
        "{err}"
    );
    assert!(latest_checkpoint(&run).unwrap().is_none());
}

#[test]
fn the_ane_device_off_apple_silicon_is_a_clear_error() {
    if cfg!(all(target_os = "macos", target_arch = "aarch64")) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let o = train(
        &dir.path().join("run"),
        &["--steps", "1", "--device", "ane"],
    );
    assert!(!o.status.success());
    assert!(stderr(&o).contains("--device cpu"), "{}", stderr(&o));
}

#[cfg(unix)]
#[test]
fn ctrl_c_saves_a_checkpoint_and_exits_130() {
    use std::time::{Duration, Instant};
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let mut args = vec![
        "train",
        "--out",
        run.to_str().unwrap(),
        "--steps",
        "100000",
        "--device",
        "reference",
    ];
    args.extend_from_slice(FAST);
    let child = Command::new(env!("CARGO_BIN_EXE_anetrain"))
        .args(&args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let metrics = run.join("metrics.jsonl");
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::fs::read_to_string(&metrics).map_or(0, |s| s.lines().count()) < 2 {
        assert!(Instant::now() < deadline, "training never started");
        std::thread::sleep(Duration::from_millis(50));
    }
    let killed = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let o = child.wait_with_output().unwrap();
    // Interrupted runs exit 130 (128 + SIGINT) after saving, as shells expect.
    assert_eq!(o.status.code(), Some(130), "{}", stderr(&o));
    assert!(stdout(&o).contains("interrupted"), "{}", stdout(&o));
    let steps = read_metrics(&metrics).unwrap().len() as u64;
    let latest = latest_checkpoint(&run).unwrap().unwrap();
    assert_eq!(Checkpoint::load(&latest).unwrap().meta.step, steps);
}
