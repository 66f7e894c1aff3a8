//! PEFT and mlx-lm adapter files: round trips, the exact names and layouts each tool expects,
//! and errors that name the tensor or field at fault.

use std::path::Path;

use anetrain_data::rng::SplitMix64;
use anetrain_model::config::ModelConfig;
use anetrain_model::hf::SafetensorsFile;
use anetrain_model::lora::{
    load_adapter, save_adapter, Adapter, AdapterFormat, Layers, LoraConfig, Target,
};
use anetrain_model::params::Tensor;

/// An adapter on the top layer of `tiny` with non-zero `B`, so a transposition or a swapped
/// half cannot go unnoticed.
fn trained_adapter(model: &ModelConfig) -> Adapter {
    let config = LoraConfig {
        rank: 4,
        alpha: 8.0,
        targets: vec![Target::QProj, Target::VProj, Target::DownProj],
        layers: Layers::Top(1),
    };
    let mut adapter = Adapter::init(config, model, 5).unwrap();
    let keys: Vec<_> = adapter.modules().map(|(k, _)| k).collect();
    let mut rng = SplitMix64::new(9);
    for (layer, target) in keys {
        let pair = adapter.get_mut(layer, target).unwrap();
        for v in pair.b.data_mut() {
            *v = rng.unit() as f32 - 0.5;
        }
    }
    adapter
}

fn tiny() -> ModelConfig {
    ModelConfig::preset("tiny").unwrap()
}

fn config_json(dir: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("adapter_config.json")).unwrap())
        .unwrap()
}

#[test]
fn peft_and_mlx_round_trip_to_the_same_adapter() {
    let model = tiny();
    let adapter = trained_adapter(&model);
    let tmp = tempfile::tempdir().unwrap();
    for format in [AdapterFormat::Peft, AdapterFormat::Mlx] {
        let dir = tmp.path().join(format!("{format:?}"));
        save_adapter(&dir, format, &adapter, "base/dir").unwrap();
        let (back, found) = load_adapter(&dir, &model).unwrap();
        assert_eq!(found, format);
        assert_eq!(back, adapter, "{format:?}");
    }
}

#[test]
fn peft_files_use_peft_names_shapes_and_config() {
    let model = tiny();
    let adapter = trained_adapter(&model);
    let dir = tempfile::tempdir().unwrap();
    save_adapter(dir.path(), AdapterFormat::Peft, &adapter, "my/base").unwrap();
    let top = model.n_layers - 1;
    let file = SafetensorsFile::open(&dir.path().join("adapter_model.safetensors")).unwrap();
    let a = file
        .read(&format!(
            "base_model.model.model.layers.{top}.self_attn.q_proj.lora_A.weight"
        ))
        .unwrap();
    let b = file
        .read(&format!(
            "base_model.model.model.layers.{top}.mlp.down_proj.lora_B.weight"
        ))
        .unwrap();
    assert_eq!(a.shape(), [4, model.dim]);
    assert_eq!(b.shape(), [model.dim, 4]);
    assert_eq!(a.data(), adapter.get(top, Target::QProj).unwrap().a.data());
    assert_eq!(file.names().len(), 6);

    let c = config_json(dir.path());
    assert_eq!(c["peft_type"], "LORA");
    assert_eq!(c["task_type"], "CAUSAL_LM");
    assert_eq!(c["r"], 4);
    assert_eq!(c["lora_alpha"], 8.0);
    assert_eq!(c["lora_dropout"], 0.0);
    assert_eq!(c["bias"], "none");
    assert_eq!(c["base_model_name_or_path"], "my/base");
    assert_eq!(
        c["target_modules"],
        serde_json::json!(["q_proj", "v_proj", "down_proj"])
    );
    assert_eq!(c["layers_to_transform"], serde_json::json!([top]));
}

#[test]
fn mlx_files_store_transposed_matrices_under_mlx_names() {
    let model = tiny();
    let adapter = trained_adapter(&model);
    let dir = tempfile::tempdir().unwrap();
    save_adapter(dir.path(), AdapterFormat::Mlx, &adapter, "my/base").unwrap();
    let top = model.n_layers - 1;
    let file = SafetensorsFile::open(&dir.path().join("adapters.safetensors")).unwrap();
    let a = file
        .read(&format!("model.layers.{top}.self_attn.v_proj.lora_a"))
        .unwrap();
    let b = file
        .read(&format!("model.layers.{top}.self_attn.v_proj.lora_b"))
        .unwrap();
    let pair = adapter.get(top, Target::VProj).unwrap();
    assert_eq!(a.shape(), [model.dim, 4]);
    assert_eq!(b.shape(), [4, model.kv_dim()]);
    // lora_a[i][k] = A[k][i], lora_b[k][o] = B[o][k]
    assert_eq!(a.data()[3 * 4 + 2], pair.a.data()[2 * model.dim + 3]);
    assert_eq!(b.data()[model.kv_dim() + 5], pair.b.data()[5 * 4 + 1]);

    let c = config_json(dir.path());
    assert_eq!(c["fine_tune_type"], "lora");
    assert_eq!(c["num_layers"], 1);
    assert_eq!(c["lora_parameters"]["rank"], 4);
    assert_eq!(c["lora_parameters"]["scale"], 2.0);
    assert_eq!(
        c["lora_parameters"]["keys"],
        serde_json::json!(["self_attn.q_proj", "self_attn.v_proj", "mlp.down_proj"])
    );
}

#[test]
fn an_adapter_for_another_base_is_refused_naming_the_tensor() {
    let model = tiny();
    let dir = tempfile::tempdir().unwrap();
    save_adapter(
        dir.path(),
        AdapterFormat::Peft,
        &trained_adapter(&model),
        "b",
    )
    .unwrap();
    let wider = ModelConfig {
        hidden_dim: model.hidden_dim * 2,
        ..model.clone()
    };
    let err = load_adapter(dir.path(), &wider).unwrap_err().to_string();
    assert!(err.contains("mlp.down_proj.lora_A.weight"), "{err}");
    assert!(err.contains("different base model"), "{err}");
}

#[test]
fn a_missing_or_unknown_tensor_is_an_error_naming_it() {
    let model = tiny();
    let adapter = trained_adapter(&model);
    let top = model.n_layers - 1;
    let dir = tempfile::tempdir().unwrap();
    save_adapter(dir.path(), AdapterFormat::Mlx, &adapter, "b").unwrap();

    // Rewrite the weights without one half, then with a stray tensor.
    let weights = dir.path().join("adapters.safetensors");
    let file = SafetensorsFile::open(&weights).unwrap();
    let all: Vec<(String, Tensor)> = file
        .names()
        .into_iter()
        .map(|n| (n.clone(), file.read(&n).unwrap()))
        .collect();
    drop(file);
    let dropped = format!("model.layers.{top}.self_attn.q_proj.lora_b");
    write(&weights, all.iter().filter(|(n, _)| *n != dropped));
    let err = load_adapter(dir.path(), &model).unwrap_err().to_string();
    assert!(err.contains(&dropped) && err.contains("missing"), "{err}");

    let stray = (
        "model.embed_tokens.lora_a".to_string(),
        Tensor::zeros(&[2, 2]),
    );
    write(&weights, all.iter().chain([&stray]));
    let err = load_adapter(dir.path(), &model).unwrap_err().to_string();
    assert!(err.contains("model.embed_tokens.lora_a"), "{err}");

    // A whole pair missing is caught against the config.
    let q = format!("model.layers.{top}.self_attn.q_proj.");
    write(&weights, all.iter().filter(|(n, _)| !n.starts_with(&q)));
    let err = load_adapter(dir.path(), &model).unwrap_err().to_string();
    assert!(
        err.contains(&format!("{q}lora_a")) && err.contains("missing"),
        "{err}"
    );
}

#[test]
fn unsupported_peft_settings_are_errors_naming_the_field() {
    let model = tiny();
    let dir = tempfile::tempdir().unwrap();
    save_adapter(
        dir.path(),
        AdapterFormat::Peft,
        &trained_adapter(&model),
        "b",
    )
    .unwrap();
    let path = dir.path().join("adapter_config.json");
    let original = config_json(dir.path());
    for (field, value) in [
        ("use_dora", serde_json::json!(true)),
        ("bias", serde_json::json!("all")),
        ("target_modules", serde_json::json!(".*proj")),
        ("layers_to_transform", serde_json::json!([0])),
    ] {
        let mut c = original.clone();
        c[field] = value;
        std::fs::write(&path, c.to_string()).unwrap();
        let err = load_adapter(dir.path(), &model).unwrap_err().to_string();
        assert!(err.contains(&format!("`{field}`")), "{field}: {err}");
    }
    std::fs::remove_file(&path).unwrap();
    let err = load_adapter(dir.path(), &model).unwrap_err().to_string();
    assert!(err.contains("adapter_config.json"), "{err}");
}

fn write<'a>(path: &Path, tensors: impl Iterator<Item = &'a (String, Tensor)>) {
    use safetensors::tensor::TensorView;
    let bytes: Vec<(String, Vec<u8>, Vec<usize>)> = tensors
        .map(|(n, t)| {
            let b = t.data().iter().flat_map(|x| x.to_le_bytes()).collect();
            (n.clone(), b, t.shape().to_vec())
        })
        .collect();
    let views: Vec<(String, TensorView)> = bytes
        .iter()
        .map(|(n, b, s)| {
            let view = TensorView::new(safetensors::Dtype::F32, s.clone(), b).unwrap();
            (n.clone(), view)
        })
        .collect();
    safetensors::serialize_to_file(views, None, path).unwrap();
}
