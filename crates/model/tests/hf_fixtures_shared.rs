//! The reference transformer reproduces `transformers`: for each shared fixture (a tiny Hugging
//! Face model plus the loss, logits and gradients PyTorch computed for one batch), loading the
//! directory with `hf.rs` and running the reference must give the same numbers to 1e-4.

mod common;
use common::{fixtures_dir, read_token_rows, rel_err};

use std::path::Path;

use anetrain_model::hf::{load_hf_dir, SafetensorsFile};
use anetrain_model::reference::{forward, loss_and_grads};

const TOLERANCE: f32 = 1e-4;

/// `stream.bin` is uint16 with overlapping rows: row b is `stream[b*seq .. b*seq + seq + 1]`.
fn read_stream_rows(path: &Path, batch: usize, seq: usize) -> Vec<Vec<u32>> {
    let bytes = std::fs::read(path).unwrap();
    let stream: Vec<u32> = bytes
        .chunks_exact(2)
        .map(|b| u16::from_le_bytes([b[0], b[1]]) as u32)
        .collect();
    assert_eq!(stream.len(), batch * seq + 1);
    (0..batch)
        .map(|b| stream[b * seq..b * seq + seq + 1].to_vec())
        .collect()
}

fn check_fixture(name: &str) {
    let Some(root) = fixtures_dir() else { return };
    let dir = root.join(name);
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("meta.json")).unwrap()).unwrap();
    let batch = meta["batch"].as_u64().unwrap() as usize;
    let seq = meta["seq"].as_u64().unwrap() as usize;

    let (config, params) = load_hf_dir(&dir).unwrap();
    let rows = read_token_rows(&dir.join("tokens.bin"), batch);
    assert_eq!(rows, read_stream_rows(&dir.join("stream.bin"), batch, seq));
    let expected = SafetensorsFile::open(&dir.join("grads.safetensors")).unwrap();

    let inputs: Vec<Vec<u32>> = rows.iter().map(|r| r[..seq].to_vec()).collect();
    let logits = forward(&config, &params, &inputs).unwrap();
    let want_logits = expected.read("logits").unwrap();
    assert_eq!(want_logits.shape(), [batch, seq, config.vocab_size]);
    let logits_err = rel_err(&logits.data, want_logits.data());

    let (loss, grads) = loss_and_grads(&config, &params, &rows, None).unwrap();
    let want_loss = expected.read("loss").unwrap().data()[0] as f64;
    let loss_err = ((loss - want_loss).abs() / want_loss.abs()) as f32;
    println!("{name}: loss {loss:.7} vs {want_loss:.7} (rel {loss_err:.2e}), logits rel {logits_err:.2e}");

    let mut worst = 0.0f32;
    let ours = grads.iter();
    let grad_names: Vec<String> = expected
        .names()
        .into_iter()
        .filter(|n| n.starts_with("grad."))
        .collect();
    assert_eq!(grad_names.len(), ours.len(), "gradient tensor count");
    for (param_name, g) in ours {
        let want = expected.read(&format!("grad.{param_name}")).unwrap();
        assert_eq!(g.shape(), want.shape(), "{param_name}");
        let err = rel_err(g.data(), want.data());
        println!("  grad {param_name:45} rel {err:.2e}");
        assert!(
            err <= TOLERANCE,
            "{name}: gradient of {param_name} off by {err:.2e}"
        );
        worst = worst.max(err);
    }
    println!("{name}: worst gradient rel error {worst:.2e}");
    assert!(
        logits_err <= TOLERANCE,
        "{name}: logits off by {logits_err:.2e}"
    );
    assert!(loss_err <= TOLERANCE, "{name}: loss off by {loss_err:.2e}");
}

#[test]
fn shared_llama_mha_matches_transformers() {
    check_fixture("llama_mha");
}

#[test]
fn shared_llama_gqa_tied_matches_transformers() {
    check_fixture("llama_gqa_tied");
}

#[test]
fn shared_qwen3_gqa_matches_transformers() {
    check_fixture("qwen3_gqa");
}
