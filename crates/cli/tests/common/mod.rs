//! Helpers shared by the end-to-end tests: running the built binary, and a tiny
//! SentencePiece-style tokenizer written by the test itself.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Runs the built `anetrain` with `args`.
pub fn anetrain(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_anetrain"))
        .args(args)
        .output()
        .expect("the anetrain binary runs")
}

/// Runs `anetrain` and fails the test, showing stderr, unless it succeeds.
pub fn ok(args: &[&str]) -> Output {
    let o = anetrain(args);
    assert!(
        o.status.success(),
        "anetrain {args:?} failed:\n{}{}",
        stdout(&o),
        stderr(&o)
    );
    o
}

/// Runs `anetrain`, expecting exit code 2 and an error naming `needle`, without a panic.
pub fn fails_with(args: &[&str], needle: &str) -> String {
    let o = anetrain(args);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "anetrain {args:?}: {err}");
    assert!(
        err.contains(needle),
        "anetrain {args:?}: expected `{needle}` in:\n{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    err
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// `path` as a command-line argument.
pub fn arg(path: &Path) -> &str {
    path.to_str().expect("test paths are UTF-8")
}

/// A shared fixture or data file, or `None` (after saying why) when `../shared` is absent.
pub fn shared(relative: &str) -> Option<PathBuf> {
    let path = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared")).join(relative);
    if path.exists() {
        Some(path)
    } else {
        eprintln!("skipped: {} is absent", path.display());
        None
    }
}

/// The `loss` of `anetrain eval ... --json`.
pub fn eval_loss(args: &[&str]) -> f64 {
    let mut all = vec!["eval", "--json"];
    all.extend_from_slice(args);
    let o = ok(&all);
    let v: serde_json::Value = serde_json::from_str(stdout(&o).trim()).expect("eval prints JSON");
    v["loss"].as_f64().expect("a loss")
}

/// Letters the test tokenizer has single tokens for; anything else falls back to bytes.
const LETTERS: &str = "abcdefghijklmnopqrstuvwxyz.";

/// Writes a small Llama-style `tokenizer.json` (SentencePiece BPE with byte fallback, BOS 1,
/// EOS 2, a decoder that strips the leading space of a text) and a `tokenizer_config.json`
/// into `dir`; returns the tokenizer.json path and its vocabulary size.
pub fn write_tokenizer(dir: &Path) -> (PathBuf, usize) {
    let mut vocab = serde_json::Map::new();
    let mut add = |token: String| {
        let id = vocab.len();
        vocab.insert(token, id.into());
    };
    for special in ["<unk>", "<s>", "</s>"] {
        add(special.into());
    }
    for byte in 0..=255u8 {
        add(format!("<0x{byte:02X}>"));
    }
    add("▁".into());
    for c in LETTERS.chars() {
        add(c.to_string());
    }
    let merges = [("▁", "t"), ("h", "e"), ("▁t", "he"), ("▁", "c"), ("a", "t")];
    for (a, b) in merges {
        add(format!("{a}{b}"));
    }
    let size = vocab.len();
    let special = |id: u32, content: &str| {
        serde_json::json!({"id": id, "content": content, "single_word": false, "lstrip": false,
            "rstrip": false, "normalized": false, "special": true})
    };
    let tokenizer = serde_json::json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": [special(0, "<unk>"), special(1, "<s>"), special(2, "</s>")],
        "normalizer": {"type": "Sequence", "normalizers": [
            {"type": "Prepend", "prepend": "▁"},
            {"type": "Replace", "pattern": {"String": " "}, "content": "▁"}
        ]},
        "pre_tokenizer": null,
        "post_processor": null,
        "decoder": {"type": "Sequence", "decoders": [
            {"type": "Replace", "pattern": {"String": "▁"}, "content": " "},
            {"type": "ByteFallback"},
            {"type": "Fuse"},
            {"type": "Strip", "content": " ", "start": 1, "stop": 0}
        ]},
        "model": {
            "type": "BPE", "dropout": null, "unk_token": "<unk>",
            "continuing_subword_prefix": null, "end_of_word_suffix": null, "fuse_unk": true,
            "byte_fallback": true, "ignore_merges": false,
            "vocab": vocab,
            "merges": merges.iter().map(|(a, b)| format!("{a} {b}")).collect::<Vec<_>>()
        }
    });
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join("tokenizer.json");
    std::fs::write(&path, tokenizer.to_string()).unwrap();
    let config =
        serde_json::json!({"bos_token": "<s>", "eos_token": "</s>", "add_bos_token": true});
    std::fs::write(dir.join("tokenizer_config.json"), config.to_string()).unwrap();
    (path, size)
}

/// A short English text that the test tokenizer covers, some ten thousand tokens long.
pub fn write_text(path: &Path) {
    let line = "the cat sat on the mat. the hat is that cat's hat.\n";
    std::fs::write(path, line.repeat(250)).unwrap();
}

/// The largest elementwise difference between `a` and `b`.
pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// `W + (alpha/r)·B·A` for every adapted projection, by plain loops: the tests' own fuse, to
/// check the binary's fused weights, losses and tokens against.
pub fn fused_by_hand(
    config: &anetrain_model::config::ModelConfig,
    base: &anetrain_model::params::Params,
    adapter: &anetrain_model::lora::Adapter,
) -> anetrain_model::params::Params {
    let mut fused = base.clone();
    let scale = adapter.config().alpha / adapter.config().rank as f32;
    for ((layer, target), pair) in adapter.modules() {
        let (d_out, d_in) = target.shape(config);
        let r = pair.rank();
        let w = target.get_mut(&mut fused.layers[layer]).into_data();
        for o in 0..d_out {
            for i in 0..d_in {
                let ba: f32 = (0..r)
                    .map(|k| pair.b.data()[o * r + k] * pair.a.data()[k * d_in + i])
                    .sum();
                w[o * d_in + i] += scale * ba;
            }
        }
    }
    fused
}

/// A fresh adapter of `lora` on `config` whose `B` matrices are seeded noise in
/// `[-spread/2, spread/2)`, so the adapter changes what the base computes.
pub fn adapter_with_noisy_b(
    lora: anetrain_model::lora::LoraConfig,
    config: &anetrain_model::config::ModelConfig,
    spread: f32,
) -> anetrain_model::lora::Adapter {
    let mut adapter = anetrain_model::lora::Adapter::init(lora, config, 4).unwrap();
    let keys: Vec<_> = adapter.modules().map(|(k, _)| k).collect();
    let mut rng = anetrain_data::rng::SplitMix64::new(8);
    for (layer, target) in keys {
        for v in adapter.get_mut(layer, target).unwrap().b.data_mut() {
            *v = (rng.unit() as f32 - 0.5) * spread;
        }
    }
    adapter
}
