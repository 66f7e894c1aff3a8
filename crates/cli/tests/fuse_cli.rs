//! `anetrain fuse` end to end: a base model and an adapter (PEFT and mlx-lm) written to disk,
//! fused by the binary, compared with the base plus the low-rank update computed here with
//! plain loops.

mod common;
use common::{adapter_with_noisy_b, anetrain, fused_by_hand, stderr};

use std::path::Path;

use anetrain_model::config::ModelConfig;
use anetrain_model::hf::{load_hf_dir, save_hf_dir};
use anetrain_model::lora::{save_adapter, Adapter, AdapterFormat, Layers, LoraConfig, Target};
use anetrain_model::params::Params;
use anetrain_model::reference::model::forward;

/// A tiny Qwen3-style (GQA, QK-norm) base on disk, and an adapter on every projection of its
/// top layer with a non-zero `B`.
fn setup(dir: &Path) -> (ModelConfig, Params, Adapter) {
    let config = ModelConfig::preset("tiny-qwen3").unwrap();
    let params = Params::init(&config, 1).unwrap();
    save_hf_dir(&dir.join("base"), &config, &params, None).unwrap();
    let lora = LoraConfig {
        rank: 2,
        alpha: 6.0,
        targets: Target::ALL.to_vec(),
        layers: Layers::Top(1),
    };
    let adapter = adapter_with_noisy_b(lora, &config, 0.2);
    (config, params, adapter)
}

#[test]
fn fused_model_computes_base_plus_adapter_for_peft_and_mlx_adapters() {
    let tmp = tempfile::tempdir().unwrap();
    let (config, base, adapter) = setup(tmp.path());
    let expected = fused_by_hand(&config, &base, &adapter);
    let tokens = vec![vec![3, 17, 5, 9, 30, 2, 11, 8]];
    let base_logits = forward(&config, &base, &tokens).unwrap();
    let expected_logits = forward(&config, &expected, &tokens).unwrap();

    for format in [AdapterFormat::Peft, AdapterFormat::Mlx] {
        let adapter_dir = tmp.path().join(format!("adapter-{format:?}"));
        save_adapter(&adapter_dir, format, &adapter, "base").unwrap();
        let out = tmp.path().join(format!("fused-{format:?}"));
        let o = anetrain(&[
            "fuse",
            "--model",
            tmp.path().join("base").to_str().unwrap(),
            "--adapter",
            adapter_dir.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        assert!(String::from_utf8_lossy(&o.stdout).contains("fused"));

        let (fused_config, fused) = load_hf_dir(&out).unwrap();
        assert_eq!(fused_config, config);
        for ((name, got), (_, want)) in fused.iter().into_iter().zip(expected.iter()) {
            for (g, w) in got.data().iter().zip(want.data()) {
                assert!((g - w).abs() < 1e-6, "{format:?} {name}: {g} vs {w}");
            }
        }
        let logits = forward(&config, &fused, &tokens).unwrap();
        let mut moved = 0.0f32;
        for ((g, w), b) in logits
            .data
            .iter()
            .zip(&expected_logits.data)
            .zip(&base_logits.data)
        {
            assert!((g - w).abs() < 1e-4, "{format:?} logits {g} vs {w}");
            moved = moved.max((g - b).abs());
        }
        assert!(moved > 1e-3, "the adapter must change the logits");
    }
}

#[test]
fn fuse_refuses_an_occupied_output_and_an_adapter_for_another_base() {
    let tmp = tempfile::tempdir().unwrap();
    let (config, _, adapter) = setup(tmp.path());
    let adapter_dir = tmp.path().join("adapter");
    save_adapter(&adapter_dir, AdapterFormat::Peft, &adapter, "base").unwrap();
    let base = tmp.path().join("base");
    let (b, a) = (base.to_str().unwrap(), adapter_dir.to_str().unwrap());

    let o = anetrain(&["fuse", "--model", b, "--adapter", a, "--out", b]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("already holds a model.safetensors"),
        "{}",
        stderr(&o)
    );

    let other = tmp.path().join("other");
    let wider = ModelConfig {
        hidden_dim: config.hidden_dim * 2,
        ..config.clone()
    };
    save_hf_dir(&other, &wider, &Params::init(&wider, 1).unwrap(), None).unwrap();
    let out = tmp.path().join("out");
    let o = anetrain(&[
        "fuse",
        "--model",
        other.to_str().unwrap(),
        "--adapter",
        a,
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(
        err.contains("mlp.gate_proj.lora_A.weight") && err.contains("different base model"),
        "{err}"
    );
    assert!(!out.join("model.safetensors").exists());
}
