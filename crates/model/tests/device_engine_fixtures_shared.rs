//! The DeviceEngine reproduces `transformers`: for each shared fixture (a tiny Hugging Face
//! model plus the loss, logits and gradients PyTorch computed for one batch), the MIL kernels
//! on the CPU device must give the same numbers to 1e-4 in f32. The cpu-f16 errors are
//! printed, with a loose bound.

mod common;
use common::{fixtures_dir, read_token_rows, rel_err};

use anetrain_data::Batch;
use anetrain_device::{CpuDevice, Precision};
use anetrain_model::engine::{DeviceEngine, Engine};
use anetrain_model::hf::{load_hf_dir, SafetensorsFile};
use anetrain_model::params::Params;

const TOLERANCE: f32 = 1e-4;

/// Runs the fixture through a DeviceEngine in `precision`; returns the loss error, the
/// logits error and the worst gradient error (with its tensor's name).
fn errors(name: &str, precision: Precision) -> Option<(f32, f32, String, f32)> {
    let dir = fixtures_dir()?.join(name);
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("meta.json")).unwrap()).unwrap();
    let batch = meta["batch"].as_u64().unwrap() as usize;
    let seq = meta["seq"].as_u64().unwrap() as usize;
    let (config, params) = load_hf_dir(&dir).unwrap();
    let rows = read_token_rows(&dir.join("tokens.bin"), batch);
    let expected = SafetensorsFile::open(&dir.join("grads.safetensors")).unwrap();

    let mut engine =
        DeviceEngine::new(&config, Box::new(CpuDevice::new(precision)), seq, &params).unwrap();
    // A power-of-two loss scale divides out exactly in f32 and keeps fp16 gradients normal.
    let loss_scale = 256.0;
    let mut grads = Params::zeros(&config);
    let stats = engine
        .forward_backward(
            &params,
            &Batch::from_rows(&rows, None).unwrap(),
            loss_scale,
            &mut grads,
        )
        .unwrap();
    let want_loss = expected.read("loss").unwrap().data()[0];
    let loss_err = (stats.loss - want_loss).abs() / want_loss.abs();

    let want_logits = expected.read("logits").unwrap();
    let mut logits = Vec::new();
    for row in &rows {
        logits.extend(engine.logits(&params, &row[..seq]).unwrap());
    }
    let logits_err = rel_err(&logits, want_logits.data());

    let mut worst = (String::new(), 0.0f32);
    for (param_name, g) in grads.iter() {
        let want = expected.read(&format!("grad.{param_name}")).unwrap();
        let unscaled: Vec<f32> = g.data().iter().map(|v| v / loss_scale).collect();
        let err = rel_err(&unscaled, want.data());
        if err > worst.1 {
            worst = (param_name, err);
        }
    }
    println!(
        "{name} ({precision:?}): loss rel {loss_err:.2e}, logits rel {logits_err:.2e}, worst gradient {} rel {:.2e}",
        worst.0, worst.1
    );
    Some((loss_err, logits_err, worst.0, worst.1))
}

fn check_fixture(name: &str) {
    let Some((loss, logits, grad_name, grad)) = errors(name, Precision::F32) else {
        return;
    };
    assert!(loss <= TOLERANCE, "{name}: loss off by {loss:.2e}");
    assert!(logits <= TOLERANCE, "{name}: logits off by {logits:.2e}");
    assert!(
        grad <= TOLERANCE,
        "{name}: gradient of {grad_name} off by {grad:.2e}"
    );
    if let Some((loss, logits, grad_name, grad)) = errors(name, Precision::F16) {
        assert!(
            loss < 1e-2 && logits < 5e-2,
            "{name}: fp16 loss {loss:.2e}, logits {logits:.2e}"
        );
        assert!(
            grad < 1e-1,
            "{name}: fp16 gradient of {grad_name} off by {grad:.2e}"
        );
    }
}

#[test]
fn shared_llama_mha_through_the_device_engine() {
    check_fixture("llama_mha");
}

#[test]
fn shared_llama_gqa_tied_through_the_device_engine() {
    check_fixture("llama_gqa_tied");
}

#[test]
fn shared_qwen3_gqa_through_the_device_engine() {
    check_fixture("qwen3_gqa");
}
