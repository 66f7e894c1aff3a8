//! The LoRA chat demonstration (`examples/lora-chat`), smaller: pretrain the tiny preset, write
//! the instruction set with the example's own `make_data.sh`, LoRA-fine-tune with
//! `--mask-prompt`, and check against what the data says: validation loss falls, and greedy
//! generation after `assistant: ` follows the reply format of the data, which the base does not.

mod common;
use common::{arg, ok, stdout};

use std::path::Path;
use std::process::Command;

const FORMAT: &str = "assistant: Sure! The ";

fn answer(model: &Path) -> String {
    let o = ok(&[
        "generate",
        "--model",
        arg(model),
        "--prompt",
        "user: moon colour?\nassistant: ",
        "--temperature",
        "0",
        "--max-tokens",
        "12",
    ]);
    stdout(&o)
}

#[test]
fn lora_on_chat_examples_teaches_the_reply_format() {
    let dir = tempfile::tempdir().unwrap();
    let script =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/lora-chat/make_data.sh");
    let data = dir.path().join("data");
    let made = Command::new("sh")
        .arg(&script)
        .arg(&data)
        .arg("120")
        .output()
        .expect("sh runs");
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let base = dir.path().join("base");
    ok(&[
        "train",
        "--model",
        "tiny",
        "--steps",
        "150",
        "--eval-every",
        "0",
        "--sample-tokens",
        "0",
        "--out",
        arg(&base),
    ]);
    let lora = dir.path().join("lora");
    ok(&[
        "train",
        "--init-from",
        arg(&base),
        "--lora-rank",
        "8",
        "--lora-targets",
        "all",
        "--data",
        arg(&data),
        "--mask-prompt",
        "--steps",
        "100",
        "--batch",
        "8",
        "--seq",
        "64",
        "--lr",
        "3e-3",
        "--warmup",
        "5",
        "--eval-every",
        "25",
        "--sample-tokens",
        "0",
        "--out",
        arg(&lora),
    ]);
    let metrics = std::fs::read_to_string(lora.join("metrics.jsonl")).unwrap();
    let val: Vec<f64> = metrics
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["val_loss"].as_f64())
        .collect();
    println!("validation loss every 25 steps: {val:?}");
    assert_eq!(val.len(), 4, "{metrics}");
    assert!(
        val[3] < val[0] - 0.3,
        "validation loss did not fall: {val:?}"
    );

    let adapted = answer(&lora);
    let original = answer(&base);
    println!("base: {original:?}\nlora: {adapted:?}");
    assert!(
        adapted.contains(FORMAT),
        "the adapted model answered {adapted:?}"
    );
    assert!(
        !original.contains(FORMAT),
        "the base already answered {original:?}"
    );
}
