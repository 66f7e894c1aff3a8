//! The user journeys end to end through the built binary: a Hugging Face model fine-tuned on
//! pretokenized data, evaluated on every device against `transformers`' loss, generated from,
//! exported and imported back; a run trained on text that carries its tokenizer; generated
//! text that is exactly the tokenizer's decode; and the bad inputs of those journeys.

mod common;

use anetrain_data::{HfTokenizer, Tokenizer};
use anetrain_device::CpuDevice;
use anetrain_model::config::ModelConfig;
use anetrain_model::generate::{Generator, SamplingOptions};
use anetrain_model::params::Params;
use common::{
    anetrain, arg, eval_loss, fails_with, ok, shared, stdout, write_text, write_tokenizer,
};

const DEVICES: [&str; 4] = ["reference", "cpu", "cpu-f16", "auto"];

/// Relative loss tolerance of a device: fp32 everywhere but `cpu-f16`, which rounds every op.
fn tolerance(device: &str) -> f64 {
    if device == "cpu-f16" {
        1e-3
    } else {
        1e-5
    }
}

fn fixture_loss(dir: &std::path::Path) -> f64 {
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("meta.json")).unwrap()).unwrap();
    meta["loss"].as_f64().unwrap()
}

#[test]
fn hf_fixture_fine_tune_eval_generate_export_import_shared() {
    let Some(fixture) = shared("fixtures/llama_mha") else {
        return;
    };
    let stream = fixture.join("stream.bin");
    let data = ["--data", arg(&stream), "--seq", "16", "--batch", "2"];
    // Every device reproduces transformers' loss on the fixture's batch.
    let want = fixture_loss(&fixture);
    for device in DEVICES {
        let mut args = vec!["--model", arg(&fixture), "--device", device];
        args.extend_from_slice(&data);
        let got = eval_loss(&args);
        let err = (got - want).abs() / want;
        assert!(
            err < tolerance(device),
            "{device}: loss {got}, transformers {want}"
        );
    }

    // Fine-tuning a 256-token model on .bin data needs no tokenizer, and the sample is skipped
    // with a reason instead of failing the run.
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let o = ok(&[
        "train",
        "--init-from",
        arg(&fixture),
        "--data",
        arg(&stream),
        "--val-data",
        arg(&stream),
        "--seq",
        "16",
        "--batch",
        "2",
        "--steps",
        "2",
        "--eval-every",
        "0",
        "--lr",
        "1e-2",
        "--out",
        arg(&run),
    ]);
    assert!(stdout(&o).contains("sample skipped"), "{}", stdout(&o));

    let run_eval = |model: &std::path::Path, device: &str| {
        let mut args = vec!["--model", arg(model), "--device", device];
        args.extend_from_slice(&data);
        eval_loss(&args)
    };
    let tuned = run_eval(&run, "reference");
    assert!(
        tuned < want - 1e-3,
        "training moved the loss: {tuned} vs {want}"
    );
    for device in DEVICES {
        let got = run_eval(&run, device);
        assert!(
            (got - tuned).abs() / tuned < tolerance(device),
            "{device}: {got} vs {tuned}"
        );
    }

    let o = ok(&[
        "generate",
        "--model",
        arg(&run),
        "--prompt-ids",
        "1,2,3",
        "--max-tokens",
        "4",
        "--temperature",
        "0",
        "--device",
        "cpu",
    ]);
    let ids: Vec<u32> = stdout(&o)
        .split_whitespace()
        .map(|t| t.parse().unwrap())
        .collect();
    assert_eq!(&ids[..3], &[1, 2, 3]);
    assert_eq!(ids.len(), 7, "{ids:?}");
    assert!(ids.iter().all(|&id| id < 256));

    let hf = dir.path().join("hf");
    ok(&["export", arg(&run), "--out", arg(&hf)]);
    for file in ["config.json", "generation_config.json", "model.safetensors"] {
        assert!(hf.join(file).is_file(), "the export lacks {file}");
    }
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(hf.join("config.json")).unwrap()).unwrap();
    for key in ["bos_token_id", "eos_token_id"] {
        assert!(config.get(key).is_some(), "config.json lacks {key}");
    }
    let back = dir.path().join("imported");
    ok(&["import", arg(&hf), "--out", arg(&back)]);
    assert_eq!(run_eval(&back, "cpu"), run_eval(&run, "cpu"));
}

#[test]
fn a_run_trained_on_text_carries_its_tokenizer_into_eval_generate_export_and_resume() {
    let dir = tempfile::tempdir().unwrap();
    let (tokenizer, vocab) = write_tokenizer(&dir.path().join("tok"));
    let text = dir.path().join("corpus.txt");
    write_text(&text);
    let run = dir.path().join("run");
    let train = |extra: &[&str]| {
        let mut args = vec![
            "train",
            "--model",
            "tiny",
            "--data",
            arg(&text),
            "--seq",
            "16",
            "--batch",
            "2",
            "--eval-every",
            "0",
            "--sample-tokens",
            "4",
            "--out",
            arg(&run),
        ];
        args.extend_from_slice(extra);
        ok(&args)
    };
    let o = train(&["--tokenizer", arg(&tokenizer), "--steps", "2"]);
    assert!(
        stdout(&o).contains(&format!("tokenizer's {vocab} tokens")),
        "{}",
        stdout(&o)
    );
    for file in ["tokenizer.json", "tokenizer_config.json"] {
        let copied = std::fs::read(run.join(file)).unwrap();
        assert_eq!(
            copied,
            std::fs::read(dir.path().join("tok").join(file)).unwrap()
        );
    }

    // eval without --tokenizer is eval with the run's own tokenizer, not bytes.
    let base = [
        "--model",
        arg(&run),
        "--data",
        arg(&text),
        "--seq",
        "16",
        "--device",
        "cpu",
    ];
    let own = eval_loss(&base);
    let mut explicit = base.to_vec();
    explicit.extend_from_slice(&["--tokenizer", arg(&tokenizer)]);
    assert_eq!(own, eval_loss(&explicit));
    let mut bytes = base.to_vec();
    bytes.extend_from_slice(&["--tokenizer", "byte"]);
    assert_ne!(own, eval_loss(&bytes));

    let o = ok(&[
        "generate",
        "--model",
        arg(&run),
        "--prompt",
        "the cat",
        "--max-tokens",
        "5",
        "--temperature",
        "0",
        "--device",
        "cpu",
    ]);
    assert!(stdout(&o).starts_with("the cat"), "{}", stdout(&o));

    // --resume finds the tokenizer in the run: the text data tokenizes the same way; another
    // tokenizer would silently change the data, so it is refused.
    let o = train(&["--resume", "--steps", "3"]);
    assert!(stdout(&o).contains("resuming"), "{}", stdout(&o));
    fails_with(
        &[
            "train",
            "--resume",
            "--out",
            arg(&run),
            "--steps",
            "4",
            "--tokenizer",
            "byte",
        ],
        "a resumed run keeps it",
    );

    let hf = dir.path().join("hf");
    ok(&["export", arg(&run), "--out", arg(&hf)]);
    for file in [
        "tokenizer.json",
        "tokenizer_config.json",
        "generation_config.json",
    ] {
        assert!(hf.join(file).is_file(), "the export lacks {file}");
    }
    let generation: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(hf.join("generation_config.json")).unwrap())
            .unwrap();
    assert_eq!(generation["bos_token_id"], 1);
    assert_eq!(generation["eos_token_id"], 2);
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(hf.join("config.json")).unwrap()).unwrap();
    assert_eq!(
        (
            config["bos_token_id"].clone(),
            config["eos_token_id"].clone()
        ),
        (1.into(), 2.into())
    );

    // Import keeps the tokenizer, and the ids survive a second round trip.
    let back = dir.path().join("imported");
    ok(&["import", arg(&hf), "--out", arg(&back)]);
    assert!(back.join("tokenizer.json").is_file());
    let mut again = base.to_vec();
    again[1] = arg(&back);
    assert_eq!(eval_loss(&again), eval_loss(&base));
    let hf2 = dir.path().join("hf2");
    ok(&["export", arg(&back), "--out", arg(&hf2)]);
    assert_eq!(
        std::fs::read_to_string(hf2.join("config.json")).unwrap(),
        std::fs::read_to_string(hf.join("config.json")).unwrap()
    );
}

#[test]
fn generated_text_is_the_tokenizers_decode_of_prompt_and_completion_shared() {
    let Some(tokenizer_path) = shared("data/llama2-tokenizer.json") else {
        return;
    };
    let tokenizer = HfTokenizer::from_file(&tokenizer_path).unwrap();
    // Seed 4 makes the first generated token a word start (`▁round`).
    let (prompt, max_tokens, seed) = ("And I", 6, 4);
    let o = ok(&[
        "generate",
        "--model",
        "tiny",
        "--tokenizer",
        arg(&tokenizer_path),
        "--prompt",
        prompt,
        "--max-tokens",
        "6",
        "--temperature",
        "0",
        "--seed",
        "4",
        "--device",
        "cpu",
    ]);
    // The same generation through the library gives the ids the binary sampled.
    let mut config = ModelConfig::preset("tiny").unwrap();
    config.vocab_size = tokenizer.vocab_size();
    let params = Params::init(&config, seed).unwrap();
    let mut ids = vec![1];
    ids.extend(tokenizer.encode(prompt).unwrap());
    let max_seq = ids.len() + max_tokens;
    let mut generator =
        Generator::new(&config, params, Box::new(CpuDevice::default()), max_seq).unwrap();
    generator.set_eos(tokenizer.eos());
    let options = SamplingOptions {
        temperature: 0.0,
        seed,
        ..SamplingOptions::default()
    };
    let mut completion = Vec::new();
    generator
        .generate(&ids, max_tokens, options, |id| {
            completion.push(id);
            true
        })
        .unwrap();
    ids.extend(&completion);
    let expected = tokenizer.decode(&ids).unwrap();
    assert_eq!(stdout(&o), format!("{expected}\n"));
    // The first generated token starts a word, so a dropped leading space would show.
    assert!(expected.starts_with("And I "), "{expected:?}");
}

#[test]
fn a_preset_keeps_its_vocabulary_on_pretokenized_data_shared() {
    let Some(bin) = shared("data/shakespeare_val.bin") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let o = ok(&[
        "train",
        "--model",
        "stories15M",
        "--data",
        arg(&bin),
        "--seq",
        "8",
        "--batch",
        "1",
        "--steps",
        "1",
        "--eval-every",
        "0",
        "--device",
        "cpu",
        "--out",
        arg(&run),
    ]);
    assert!(stdout(&o).contains("sample skipped"), "{}", stdout(&o));
    let meta: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(run.join("ckpt-00000001/meta.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(meta["config"]["vocab_size"], 32000);
}

fn refs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

#[test]
fn bad_inputs_of_the_journeys_get_their_message_and_exit_code() {
    let dir = tempfile::tempdir().unwrap();
    let (tokenizer, _) = write_tokenizer(&dir.path().join("tok"));
    let text = dir.path().join("corpus.txt");
    write_text(&text);
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let run = dir.path().join("run");
    let train = |extra: &[&str]| {
        let mut args = vec![
            "train",
            "--data",
            arg(&text),
            "--seq",
            "16",
            "--batch",
            "2",
            "--steps",
            "1",
            "--eval-every",
            "0",
            "--out",
            arg(&run),
        ];
        args.extend_from_slice(extra);
        args.iter().map(|s| s.to_string()).collect::<Vec<_>>()
    };

    // A bad --temperature or --tokenizer is refused before anything is written.
    let args = train(&["--temperature=-1"]);
    fails_with(&refs(&args), "--temperature");
    // A directory passed as --tokenizer names what it lacks.
    let args = train(&["--tokenizer", arg(&empty)]);
    fails_with(&refs(&args), "directory without a tokenizer.json");
    assert!(!run.exists(), "a refused run wrote {}", run.display());
    // An unknown device lists every name, reference included.
    let args = train(&["--device", "gpu"]);
    let err = String::from_utf8_lossy(&anetrain(&refs(&args)).stderr).into_owned();
    assert!(err.contains("auto, cpu, cpu-f16, ane, reference"), "{err}");

    // A tokenizer with more tokens than the model's vocabulary is an error, not a fallback.
    let model = dir.path().join("model");
    ok(&[
        "train",
        "--data",
        "synthetic:4000",
        "--seq",
        "16",
        "--batch",
        "2",
        "--steps",
        "1",
        "--eval-every",
        "0",
        "--sample-tokens",
        "0",
        "--out",
        arg(&model),
    ]);
    std::fs::remove_file(model.join("tokenizer.json")).ok();
    fails_with(
        &[
            "eval",
            "--model",
            arg(&model),
            "--data",
            arg(&text),
            "--tokenizer",
            arg(&tokenizer),
        ],
        "tokens but the model's vocabulary has 258",
    );
    fails_with(
        &[
            "generate",
            "--model",
            arg(&model),
            "--tokenizer",
            arg(&tokenizer),
        ],
        "tokens but the model's vocabulary has 258",
    );
    // Text needs a tokenizer; a model without one says how to give it.
    let fixture_like = dir.path().join("plain");
    ok(&[
        "export",
        arg(&model),
        "--format",
        "llama2c",
        "--out",
        arg(&fixture_like),
    ]);
    fails_with(
        &["eval", "--model", arg(&fixture_like), "--data", arg(&text)],
        "needs a tokenizer",
    );
    fails_with(&["generate", "--model", arg(&fixture_like)], "--prompt-ids");
    fails_with(
        &["eval", "--model", "no/such/run", "--data", arg(&text)],
        "does not exist",
    );
}
