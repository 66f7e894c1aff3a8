//! `train --optimizer-state bf16` end to end through the binary on the tiny model (CPU
//! device): the loss falls; the checkpoints store AdamW's moments as BF16 (read from the
//! safetensors header itself); a run resumed from a middle checkpoint ends bit-identical to the
//! uninterrupted one, keeping the precision without the flag; a contradicting flag on resume,
//! bf16 with SGD and an unknown precision are refused, naming the fix. A LoRA run keeps its
//! adapter's moments in bf16 too.

mod common;
use common::{arg, fails_with, ok, stdout};

use std::path::Path;

use anetrain_model::train::metrics::read_metrics;

/// Flags of a fast run: the tiny model, 16-token sequences of a small synthetic corpus.
const FAST: &[&str] = &[
    "--data",
    "synthetic:20000",
    "--seq",
    "16",
    "--batch",
    "4",
    "--eval-every",
    "0",
    "--sample-tokens",
    "0",
    "--device",
    "cpu",
];

/// Runs `train --out OUT` with [`FAST`] and `extra`, failing the test unless it succeeds.
fn train_ok(out: &Path, extra: &[&str]) -> String {
    let mut args = vec!["train", "--out", arg(out)];
    args.extend_from_slice(FAST);
    args.extend_from_slice(extra);
    stdout(&ok(&args))
}

/// The dtype of every tensor in a safetensors file, from its JSON header.
fn stored_dtypes(path: &Path) -> Vec<String> {
    let bytes = std::fs::read(path).unwrap();
    let len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + len]).unwrap();
    header
        .as_object()
        .unwrap()
        .iter()
        .filter(|(name, _)| *name != "__metadata__")
        .map(|(_, info)| info["dtype"].as_str().unwrap().to_string())
        .collect()
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn bf16_moments_train_save_as_bf16_and_resume_bit_identically() {
    let dir = tempfile::tempdir().unwrap();
    let whole = dir.path().join("whole");
    let flags = [
        "--optimizer-state",
        "bf16",
        "--steps",
        "8",
        "--save-every",
        "4",
        "--keep-last",
        "5",
    ];
    train_ok(&whole, &flags);

    let metrics = read_metrics(&whole.join("metrics.jsonl")).unwrap();
    let losses: Vec<f32> = metrics.iter().map(|m| m.loss).collect();
    assert_eq!(losses.len(), 8);
    assert!(
        losses[6..].iter().all(|&l| l < losses[0] - 0.3),
        "the loss does not fall: {losses:?}"
    );
    let run_json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(whole.join("run.json")).unwrap()).unwrap();
    assert_eq!(
        run_json["options"]["optimizer"]["state"], "bf16",
        "{run_json}"
    );
    let optimizer = whole.join("ckpt-00000008/optimizer.safetensors");
    let dtypes = stored_dtypes(&optimizer);
    assert!(
        !dtypes.is_empty() && dtypes.iter().all(|d| d == "BF16"),
        "{dtypes:?}"
    );
    assert!(
        stored_dtypes(&whole.join("ckpt-00000008/model.safetensors"))
            .iter()
            .all(|d| d == "F32")
    );

    // The same run stopped after step 4: a copy without its last checkpoint, resumed with no
    // precision flag.
    let resumed = dir.path().join("resumed");
    std::fs::create_dir(&resumed).unwrap();
    for entry in std::fs::read_dir(&whole).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name();
        if name == "ckpt-00000008" || name == ".lock" {
            continue;
        }
        let dst = resumed.join(&name);
        if entry.file_type().unwrap().is_dir() {
            std::fs::create_dir(&dst).unwrap();
            for file in std::fs::read_dir(entry.path()).unwrap() {
                let file = file.unwrap();
                std::fs::copy(file.path(), dst.join(file.file_name())).unwrap();
            }
        } else {
            std::fs::copy(entry.path(), &dst).unwrap();
        }
    }
    let out = train_ok(&resumed, &["--resume", "--steps", "8", "--save-every", "4"]);
    assert!(out.contains("at step 4 of 8"), "{out}");
    for file in ["model.safetensors", "optimizer.safetensors"] {
        let (a, b) = (whole.join("ckpt-00000008"), resumed.join("ckpt-00000008"));
        assert!(
            read(&a.join(file)) == read(&b.join(file)),
            "the resumed run's {file} differs from the uninterrupted run's"
        );
    }

    // Resuming with the other precision would change what the run computes.
    let err = fails_with(
        &[
            "train",
            "--out",
            arg(&resumed),
            "--resume",
            "--steps",
            "10",
            "--optimizer-state",
            "fp32",
            "--device",
            "cpu",
        ],
        "--optimizer-state is fp32 but the checkpoint used bf16",
    );
    assert!(err.contains("drop these flags"), "{err}");
}

#[test]
fn bf16_state_with_sgd_and_unknown_precisions_are_refused_before_the_run_starts() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let run = |extra: &[&str], needle: &str| {
        let mut args = vec!["train", "--out", arg(&out)];
        args.extend_from_slice(FAST);
        args.extend_from_slice(extra);
        fails_with(&args, needle);
        assert!(!out.exists(), "a refused run created --out");
    };
    run(
        &["--optimizer", "sgd", "--optimizer-state", "bf16"],
        "SGD has none; use --optimizer adamw or drop --optimizer-state",
    );
    run(
        &["--optimizer-state", "fp16"],
        "unknown optimizer state `fp16`",
    );
}

#[test]
fn a_lora_run_keeps_its_adapters_moments_in_bf16() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("base");
    train_ok(&base, &["--steps", "1"]);
    let lora = dir.path().join("lora");
    train_ok(
        &lora,
        &[
            "--init-from",
            arg(&base),
            "--lora-rank",
            "4",
            "--optimizer-state",
            "bf16",
            "--steps",
            "2",
        ],
    );
    let dtypes = stored_dtypes(&lora.join("ckpt-00000002/optimizer.safetensors"));
    assert!(
        !dtypes.is_empty() && dtypes.iter().all(|d| d == "BF16"),
        "{dtypes:?}"
    );
}
