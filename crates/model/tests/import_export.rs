//! Checkpoint import and export: Hugging Face directories and llama2.c `.bin` files round-trip
//! exactly, the llama2.c RoPE permutation is the right one, configs survive JSON, and broken
//! files give errors that name the problem.

use std::path::{Path, PathBuf};

use anetrain_model::config::{ModelConfig, PRESETS};
use anetrain_model::hf::{load_hf_dir, save_hf_dir, SafetensorsFile, INDEX_FILE, WEIGHTS_FILE};
use anetrain_model::llama2c::{interleaved_to_rotate_half, read_llama2c, write_llama2c};
use anetrain_model::params::{Linear, Params};
use anetrain_model::reference::forward;
use anetrain_model::reference::rope::RopeTable;
use safetensors::tensor::TensorView;
use safetensors::Dtype;

/// A fresh scratch directory per test, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Self {
        let dir =
            std::env::temp_dir().join(format!("anetrain-model-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Rewrites `src` safetensors to `dst` after `edit` changes the (name, dtype, shape, bytes) list.
fn rewrite(
    src: &Path,
    dst: &Path,
    edit: impl FnOnce(&mut Vec<(String, Dtype, Vec<usize>, Vec<u8>)>),
) {
    let file = SafetensorsFile::open(src).unwrap();
    let mut tensors: Vec<_> = file
        .names()
        .into_iter()
        .map(|n| {
            let t = file.read(&n).unwrap();
            let bytes = t.data().iter().flat_map(|x| x.to_le_bytes()).collect();
            (n, Dtype::F32, t.shape().to_vec(), bytes)
        })
        .collect();
    edit(&mut tensors);
    let views: Vec<(String, TensorView)> = tensors
        .iter()
        .map(|(n, d, s, b)| (n.clone(), TensorView::new(*d, s.clone(), b).unwrap()))
        .collect();
    safetensors::serialize_to_file(views, None, dst).unwrap();
}

fn tokens(config: &ModelConfig) -> Vec<Vec<u32>> {
    (0..2)
        .map(|b| {
            (0..7)
                .map(|t| ((b * 31 + t * 17) % config.vocab_size) as u32)
                .collect()
        })
        .collect()
}

#[test]
fn hf_export_then_import_is_the_identity() {
    for preset in ["tiny", "tiny-gqa", "tiny-qwen3"] {
        let scratch = Scratch::new(&format!("hf-{preset}"));
        let config = ModelConfig::preset(preset).unwrap();
        let params = Params::init(&config, 5).unwrap();
        save_hf_dir(&scratch.0, &config, &params, None).unwrap();
        let (config2, params2) = load_hf_dir(&scratch.0).unwrap();
        assert_eq!(config2, config, "{preset}");
        assert_eq!(params2, params, "{preset}");
        let names = SafetensorsFile::open(&scratch.0.join(WEIGHTS_FILE))
            .unwrap()
            .names();
        assert_eq!(
            names.contains(&"lm_head.weight".to_string()),
            !config.tied_embeddings
        );
    }
}

#[test]
fn sharded_and_half_precision_checkpoints_load() {
    let scratch = Scratch::new("sharded");
    let config = ModelConfig::preset("tiny-gqa").unwrap();
    let params = Params::init(&config, 9).unwrap();
    let export = scratch.0.join("export");
    save_hf_dir(&export, &config, &params, None).unwrap();

    let dir = scratch.0.join("sharded");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(export.join("config.json"), dir.join("config.json")).unwrap();
    let all = SafetensorsFile::open(&export.join(WEIGHTS_FILE))
        .unwrap()
        .names();
    let (first, second): (Vec<String>, Vec<String>) =
        all.iter().cloned().partition(|n| n.contains("layers.0."));
    let mut map = serde_json::Map::new();
    for (shard, keep) in [
        ("model-00001-of-00002.safetensors", &first),
        ("model-00002-of-00002.safetensors", &second),
    ] {
        rewrite(&export.join(WEIGHTS_FILE), &dir.join(shard), |ts| {
            ts.retain(|(n, ..)| keep.contains(n));
            // The second shard stores BF16, as many published checkpoints do.
            if shard.starts_with("model-00002") {
                for (_, dtype, _, bytes) in ts.iter_mut() {
                    *dtype = Dtype::BF16;
                    *bytes = bytes
                        .chunks_exact(4)
                        .flat_map(|b| {
                            half::bf16::from_f32(f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                                .to_le_bytes()
                        })
                        .collect();
                }
            }
        });
        for n in keep {
            map.insert(n.clone(), serde_json::Value::String(shard.to_string()));
        }
    }
    let index = serde_json::json!({ "metadata": {}, "weight_map": map });
    std::fs::write(dir.join(INDEX_FILE), index.to_string()).unwrap();

    let (_, loaded) = load_hf_dir(&dir).unwrap();
    for (name, t) in params.iter() {
        let got = loaded.get(&name).unwrap();
        let want: Vec<f32> = if name.contains("layers.0.") {
            t.data().to_vec()
        } else {
            t.data()
                .iter()
                .map(|&x| half::bf16::from_f32(x).to_f32())
                .collect()
        };
        assert!(
            got.data() == &want[..],
            "{name} differs after the sharded load"
        );
    }
}

#[test]
fn llama2c_write_then_read_round_trips_and_preserves_the_forward_pass() {
    for preset in ["tiny", "tiny-gqa"] {
        let scratch = Scratch::new(&format!("l2c-{preset}"));
        let mut config = ModelConfig::preset(preset).unwrap();
        config.max_seq_len = 16;
        let params = Params::init(&config, 3).unwrap();
        let path = scratch.0.join("model.bin");
        write_llama2c(&path, &config, &params).unwrap();
        let (config2, params2) = read_llama2c(&path).unwrap();
        assert_eq!(config2, config, "{preset}");
        assert_eq!(params2, params, "{preset}");
        let a = forward(&config, &params, &tokens(&config)).unwrap();
        let b = forward(&config2, &params2, &tokens(&config)).unwrap();
        assert_eq!(a, b);

        // The file stores wq in the interleaved layout: its first layer is not the HF rows.
        let bytes = std::fs::read(&path).unwrap();
        let floats = |offset: usize, n: usize| -> Vec<f32> {
            bytes[28 + 4 * offset..28 + 4 * (offset + n)]
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect()
        };
        let wq_offset = config.vocab_size * config.dim + config.n_layers * config.dim;
        let raw_wq = floats(wq_offset, config.q_dim() * config.dim);
        assert_eq!(
            interleaved_to_rotate_half(&raw_wq, config.head_dim, config.dim),
            Linear::QProj.get(&params.layers[0]).data()
        );
    }
}

#[test]
fn llama2c_reads_files_with_and_without_freq_cis_tables() {
    let scratch = Scratch::new("l2c-freq");
    let mut config = ModelConfig::preset("tiny-gqa").unwrap(); // tied: freq_cis is the tail
    config.max_seq_len = 16;
    let params = Params::init(&config, 4).unwrap();
    let path = scratch.0.join("with.bin");
    write_llama2c(&path, &config, &params).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    let freq_cis_bytes = 4 * config.max_seq_len * config.head_dim;
    let short = scratch.0.join("without.bin");
    std::fs::write(&short, &bytes[..bytes.len() - freq_cis_bytes]).unwrap();
    assert_eq!(read_llama2c(&short).unwrap().1, params);
}

/// Applies llama2.c's RoPE (pairs `2i, 2i+1`) to one head-major vector, as `run.c` does.
fn interleaved_rope(q: &mut [f32], head_dim: usize, pos: usize, theta: f64) {
    for head in q.chunks_exact_mut(head_dim) {
        for i in 0..head_dim / 2 {
            let a = pos as f64 * theta.powf(-2.0 * i as f64 / head_dim as f64);
            let (c, s) = (a.cos() as f32, a.sin() as f32);
            let (x0, x1) = (head[2 * i], head[2 * i + 1]);
            head[2 * i] = x0 * c - x1 * s;
            head[2 * i + 1] = x0 * s + x1 * c;
        }
    }
}

#[test]
fn interleaved_rope_on_original_weights_equals_rotate_half_rope_on_permuted_weights() {
    let (n_heads, head_dim, dim, pos) = (3, 8, 5, 6);
    let rows = n_heads * head_dim;
    let w: Vec<f32> = (0..rows * dim)
        .map(|i| ((i * 7919) % 97) as f32 / 48.0 - 1.0)
        .collect();
    let x: Vec<f32> = (0..dim).map(|i| (i as f32 * 0.7).sin()).collect();
    let matvec = |w: &[f32]| -> Vec<f32> {
        (0..rows)
            .map(|r| (0..dim).map(|c| w[r * dim + c] * x[c]).sum())
            .collect()
    };
    let mut q_l2c = matvec(&w);
    interleaved_rope(&mut q_l2c, head_dim, pos, 10000.0);

    let table = RopeTable::new(head_dim, pos + 1, 10000.0);
    let mut q_hf = vec![0.0; (pos + 1) * rows];
    q_hf[pos * rows..].copy_from_slice(&matvec(&interleaved_to_rotate_half(&w, head_dim, dim)));
    table.forward(&mut q_hf, rows, pos + 1);
    let q_hf = &q_hf[pos * rows..];

    // Same values, HF's order: the permutation commutes with RoPE ...
    let q_l2c_as_hf = interleaved_to_rotate_half(&q_l2c, head_dim, 1);
    for (a, b) in q_hf.iter().zip(&q_l2c_as_hf) {
        assert!((a - b).abs() < 1e-5, "{a} vs {b}");
    }
    // ... so per-head dot products, i.e. attention scores, are unchanged.
    for h in 0..n_heads {
        let r = h * head_dim..(h + 1) * head_dim;
        let s_hf: f32 = q_hf[r.clone()].iter().map(|v| v * v).sum();
        let s_l2c: f32 = q_l2c[r].iter().map(|v| v * v).sum();
        assert!((s_hf - s_l2c).abs() < 1e-4);
    }
}

#[test]
fn config_json_round_trips_for_every_preset() {
    for name in PRESETS {
        let config = ModelConfig::preset(name).unwrap();
        assert_eq!(
            ModelConfig::from_hf_json(&config.to_hf_json()).unwrap(),
            config,
            "{name}"
        );
    }
}

#[test]
fn transformers_5_config_with_nested_rope_theta_parses() {
    let text = r#"{"architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3", "head_dim": 24,
        "hidden_act": "silu", "hidden_size": 64, "intermediate_size": 128,
        "max_position_embeddings": 128, "num_attention_heads": 4, "num_hidden_layers": 2,
        "num_key_value_heads": 2, "rms_norm_eps": 1e-06,
        "rope_parameters": {"rope_theta": 1000000.0, "rope_type": "default"},
        "sliding_window": null, "tie_word_embeddings": true, "use_sliding_window": false,
        "vocab_size": 256}"#;
    let c = ModelConfig::from_hf_json(text).unwrap();
    assert_eq!(
        (c.head_dim, c.q_dim(), c.kv_dim(), c.rope_theta),
        (24, 96, 48, 1e6)
    );
    assert!(c.tied_embeddings && c.qk_norm);
}

#[test]
fn truncated_llama2c_file_is_reported_with_sizes() {
    let scratch = Scratch::new("l2c-trunc");
    let config = ModelConfig::preset("tiny").unwrap();
    let path = scratch.0.join("model.bin");
    write_llama2c(&path, &config, &Params::init(&config, 1).unwrap()).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() - 100]).unwrap();
    let msg = read_llama2c(&path).unwrap_err().to_string();
    assert!(
        msg.contains("truncated") && msg.contains(&bytes.len().to_string()),
        "{msg}"
    );
    std::fs::write(&path, &bytes[..10]).unwrap();
    let msg = read_llama2c(&path).unwrap_err().to_string();
    assert!(msg.contains("header"), "{msg}");
}

#[test]
fn missing_and_misshapen_tensors_are_named() {
    let scratch = Scratch::new("hf-broken");
    let config = ModelConfig::preset("tiny").unwrap();
    save_hf_dir(
        &scratch.0,
        &config,
        &Params::init(&config, 2).unwrap(),
        None,
    )
    .unwrap();
    let weights = scratch.0.join(WEIGHTS_FILE);
    let original = scratch.0.join("original.safetensors");
    std::fs::rename(&weights, &original).unwrap();

    let victim = "model.layers.1.mlp.up_proj.weight";
    rewrite(&original, &weights, |ts| ts.retain(|(n, ..)| n != victim));
    let msg = load_hf_dir(&scratch.0).unwrap_err().to_string();
    assert!(msg.contains(victim) && msg.contains("missing"), "{msg}");

    rewrite(&original, &weights, |ts| {
        for (n, _, shape, _) in ts.iter_mut() {
            if n == victim {
                *shape = vec![64, 128]; // transposed: [dim, hidden] instead of [hidden, dim]
            }
        }
    });
    let msg = load_hf_dir(&scratch.0).unwrap_err().to_string();
    assert!(
        msg.contains(victim) && msg.contains("[64, 128]") && msg.contains("[128, 64]"),
        "{msg}"
    );
}

#[test]
fn llama2c_export_refuses_what_it_cannot_express() {
    let scratch = Scratch::new("l2c-refuse");
    let config = ModelConfig::preset("tiny-qwen3").unwrap();
    let err =
        write_llama2c(&scratch.0.join("q.bin"), &config, &Params::zeros(&config)).unwrap_err();
    assert!(err.to_string().contains("Qwen3"), "{err}");
}
