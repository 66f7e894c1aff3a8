//! `eval --adapter` and `generate --adapter` end to end: a tiny Hugging Face base and a LoRA
//! adapter (PEFT and mlx-lm, non-zero `B`) written here; the binary's loss and greedy tokens are
//! compared with the reference forward pass on `W + (alpha/r)·B·A` computed here by plain loops.

mod common;
use common::{adapter_with_noisy_b, arg, fails_with, fused_by_hand, ok, stdout};

use std::path::Path;

use anetrain_model::config::ModelConfig;
use anetrain_model::hf::save_hf_dir;
use anetrain_model::lora::{save_adapter, Adapter, AdapterFormat, Layers, LoraConfig, Target};
use anetrain_model::params::Params;
use anetrain_model::reference::model::forward;

const SEQ: usize = 12;

/// A Qwen3-style (GQA, QK-norm) base on disk without a tokenizer, and an adapter on every
/// projection of every layer with a `B` large enough to change greedy choices.
fn setup(dir: &Path) -> (ModelConfig, Params, Adapter) {
    let config = ModelConfig::preset("tiny-qwen3").unwrap();
    let params = Params::init(&config, 1).unwrap();
    save_hf_dir(&dir.join("base"), &config, &params, None).unwrap();
    let lora = LoraConfig {
        rank: 4,
        alpha: 8.0,
        targets: Target::ALL.to_vec(),
        layers: Layers::All,
    };
    let adapter = adapter_with_noisy_b(lora, &config, 4.0);
    (config, params, adapter)
}

/// Mean next-token cross-entropy of `tokens` under `params`, by log-sum-exp over the logits.
fn loss(config: &ModelConfig, params: &Params, tokens: &[u32]) -> f64 {
    let n = tokens.len() - 1;
    let logits = forward(config, params, &[tokens[..n].to_vec()]).unwrap();
    let v = config.vocab_size;
    let mut total = 0.0;
    for p in 0..n {
        let row = &logits.data[p * v..][..v];
        let max = row.iter().fold(f32::MIN, |m, &x| m.max(x)) as f64;
        let lse = max
            + row
                .iter()
                .map(|&x| (x as f64 - max).exp())
                .sum::<f64>()
                .ln();
        total += lse - row[tokens[p + 1] as usize] as f64;
    }
    total / n as f64
}

/// Greedy continuation of `prompt` by `max` tokens, one full reference forward per token.
fn greedy(config: &ModelConfig, params: &Params, prompt: &[u32], max: usize) -> Vec<u32> {
    let mut seq = prompt.to_vec();
    let v = config.vocab_size;
    for _ in 0..max {
        let logits = forward(config, params, &[seq.clone()]).unwrap();
        let last = &logits.data[(seq.len() - 1) * v..][..v];
        let best = (0..v).fold(0, |b, i| if last[i] > last[b] { i } else { b });
        seq.push(best as u32);
    }
    seq[prompt.len()..].to_vec()
}

/// One sample of `SEQ + 1` tokens as a uint16 shard.
fn write_shard(path: &Path) -> Vec<u32> {
    let tokens: Vec<u32> = (0..=SEQ as u32).map(|i| (i * 37 + 5) % 200).collect();
    let bytes: Vec<u8> = tokens
        .iter()
        .flat_map(|&t| (t as u16).to_le_bytes())
        .collect();
    std::fs::write(path, bytes).unwrap();
    tokens
}

fn eval_loss(model: &Path, data: &Path, adapter: Option<&Path>) -> f64 {
    let seq = SEQ.to_string();
    let mut args = vec![
        "eval",
        "--json",
        "--device",
        "cpu",
        "--model",
        arg(model),
        "--data",
        arg(data),
        "--seq",
        &seq,
    ];
    if let Some(a) = adapter {
        args.extend(["--adapter", arg(a)]);
    }
    let o = ok(&args);
    let v: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    v["loss"].as_f64().unwrap()
}

/// The ids `generate --prompt-ids` prints after the prompt's.
fn generated_ids(model: &Path, adapter: Option<&Path>, prompt: &[u32], max: usize) -> Vec<u32> {
    let ids = prompt
        .iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(",");
    let max = max.to_string();
    let mut args = vec![
        "generate",
        "--device",
        "cpu",
        "--model",
        arg(model),
        "--prompt-ids",
        &ids,
        "--temperature",
        "0",
        "--max-tokens",
        &max,
    ];
    if let Some(a) = adapter {
        args.extend(["--adapter", arg(a)]);
    }
    let out = stdout(&ok(&args));
    let all: Vec<u32> = out.split_whitespace().map(|t| t.parse().unwrap()).collect();
    assert_eq!(&all[..prompt.len()], prompt, "{out}");
    all[prompt.len()..].to_vec()
}

#[test]
fn eval_with_an_adapter_equals_the_loss_of_the_fused_weights_in_both_formats() {
    let tmp = tempfile::tempdir().unwrap();
    let (config, base, adapter) = setup(tmp.path());
    let data = tmp.path().join("sample.bin");
    let tokens = write_shard(&data);
    let want = loss(&config, &fused_by_hand(&config, &base, &adapter), &tokens);
    let base_want = loss(&config, &base, &tokens);
    assert!((want - base_want).abs() > 1e-3, "the adapter must matter");

    let base_dir = tmp.path().join("base");
    let base_got = eval_loss(&base_dir, &data, None);
    assert!(
        (base_got - base_want).abs() < 1e-4,
        "{base_got} vs {base_want}"
    );
    for format in [AdapterFormat::Peft, AdapterFormat::Mlx] {
        let dir = tmp.path().join(format!("adapter-{format:?}"));
        save_adapter(&dir, format, &adapter, "base").unwrap();
        let got = eval_loss(&base_dir, &data, Some(&dir));
        assert!((got - want).abs() < 1e-4, "{format:?}: {got} vs {want}");
    }
}

#[test]
fn greedy_generation_with_an_adapter_follows_the_fused_model() {
    let tmp = tempfile::tempdir().unwrap();
    let (config, base, adapter) = setup(tmp.path());
    let prompt = [3, 17, 5, 9];
    let max = 10;
    let want = greedy(
        &config,
        &fused_by_hand(&config, &base, &adapter),
        &prompt,
        max,
    );
    assert_ne!(
        want,
        greedy(&config, &base, &prompt, max),
        "the adapter must change the continuation"
    );

    let base_dir = tmp.path().join("base");
    for format in [AdapterFormat::Peft, AdapterFormat::Mlx] {
        let dir = tmp.path().join(format!("adapter-{format:?}"));
        save_adapter(&dir, format, &adapter, "base").unwrap();
        let got = generated_ids(&base_dir, Some(&dir), &prompt, max);
        assert_eq!(got, want, "{format:?}");
        let fused_dir = tmp.path().join(format!("fused-{format:?}"));
        ok(&[
            "fuse",
            "--model",
            arg(&base_dir),
            "--adapter",
            arg(&dir),
            "--out",
            arg(&fused_dir),
        ]);
        assert_eq!(generated_ids(&fused_dir, None, &prompt, max), want);
    }
}

#[test]
fn a_missing_unknown_or_mismatched_adapter_is_refused_before_any_work() {
    let tmp = tempfile::tempdir().unwrap();
    let (config, _, adapter) = setup(tmp.path());
    let base = tmp.path().join("base");
    let data = tmp.path().join("sample.bin");
    write_shard(&data);
    let run = |adapter: &Path, needle: &str| {
        fails_with(
            &[
                "eval",
                "--model",
                arg(&base),
                "--data",
                arg(&data),
                "--adapter",
                arg(adapter),
            ],
            needle,
        );
        fails_with(
            &[
                "generate",
                "--model",
                arg(&base),
                "--prompt-ids",
                "1,2",
                "--adapter",
                arg(adapter),
            ],
            needle,
        );
    };
    run(&tmp.path().join("nowhere"), "is not a directory");
    let empty = tmp.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    run(&empty, "no adapter_config.json here");
    let no_weights = tmp.path().join("no-weights");
    std::fs::create_dir(&no_weights).unwrap();
    std::fs::write(no_weights.join("adapter_config.json"), "{}").unwrap();
    run(&no_weights, "neither adapter_model.safetensors (PEFT)");

    let other = tmp.path().join("other");
    let wider = ModelConfig {
        hidden_dim: config.hidden_dim * 2,
        ..config.clone()
    };
    let wider_params = Params::init(&wider, 1).unwrap();
    save_hf_dir(&other, &wider, &wider_params, None).unwrap();
    let dir = tmp.path().join("adapter");
    save_adapter(&dir, AdapterFormat::Mlx, &adapter, "base").unwrap();
    fails_with(
        &[
            "generate",
            "--model",
            arg(&other),
            "--prompt-ids",
            "1,2",
            "--adapter",
            arg(&dir),
        ],
        "different base model",
    );
}

#[test]
fn bench_generate_fuses_the_adapter_once_and_names_it() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, _, adapter) = setup(tmp.path());
    let dir = tmp.path().join("adapter");
    save_adapter(&dir, AdapterFormat::Peft, &adapter, "base").unwrap();
    let o = ok(&[
        "bench",
        "generate",
        "--model",
        arg(&tmp.path().join("base")),
        "--adapter",
        arg(&dir),
        "--prompts",
        "3",
        "--tokens",
        "2",
        "--runs",
        "1",
    ]);
    let out = stdout(&o);
    assert!(
        out.contains("PEFT adapter") && out.contains("rank 4"),
        "{out}"
    );
    assert!(out.contains("adapter fused into the weights once"), "{out}");
}
