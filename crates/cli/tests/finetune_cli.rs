//! Fine-tuning through the binary: a tiny Hugging Face model directory written here (config,
//! safetensors through the library's writer, a SentencePiece-style tokenizer and a
//! `tokenizer_config.json` whose chat template is written here), `{"messages"}` data in the
//! mlx-lm layout, `train --data DIR --mask-prompt` (the truncation count, validation loss
//! falling), and `eval --data x.jsonl --mask-prompt` against a loss computed here: the
//! conversation rendered by hand, the prompt masked by tokenizing its prefix separately, and
//! the plain-Rust reference forward.

mod common;
use common::{arg, fails_with, ok, stderr, stdout, write_tokenizer};

use std::path::Path;

use anetrain_data::{HfTokenizer, Tokenizer, TokenizerSource};
use anetrain_model::config::ModelConfig;
use anetrain_model::hf::save_hf_dir;
use anetrain_model::params::Params;
use anetrain_model::reference;

const SEQ: usize = 32;

/// The template, and (in [`render`]) the same format written by hand.
const TEMPLATE: &str = "{% for m in messages %}{% if m['role'] == 'user' %}{{ bos_token }}user: {{ m['content'] }}\n{% else %}assistant: {{ m['content'] }}{{ eos_token }}{% endif %}{% endfor %}{% if add_generation_prompt %}assistant:{% endif %}";

/// `(prompt ids, all ids)` of one user/assistant exchange in the template's format: BOS,
/// `user: Q\nassistant:`, then ` A` and EOS; the tokenizer's own encoding of each piece.
fn render(tok: &HfTokenizer, user: &str, reply: &str) -> (Vec<u32>, Vec<u32>) {
    let prompt = [
        vec![1],
        tok.encode(&format!("user: {user}\nassistant:")).unwrap(),
    ]
    .concat();
    let all = [
        vec![1],
        tok.encode(&format!("user: {user}\nassistant: {reply}"))
            .unwrap(),
        vec![2],
    ]
    .concat();
    (prompt, all)
}

/// Questions and the fixed-format replies the model is to learn.
fn exchanges(n: usize, offset: usize) -> Vec<(String, String)> {
    let words = ["the", "cat", "sat", "hat", "mat"];
    (0..n)
        .map(|i| {
            let k = i + offset;
            let q: Vec<&str> = (0..2 + k % 3).map(|j| words[(k * 7 + j * 3) % 5]).collect();
            // Every fifth question is long enough to be truncated at --seq.
            let q = if k % 5 == 4 { q.repeat(6) } else { q };
            (q.join(" "), format!("that {}.", words[k % 5]))
        })
        .collect()
}

fn jsonl(exchanges: &[(String, String)]) -> String {
    exchanges
        .iter()
        .map(|(q, a)| {
            serde_json::json!({"messages": [
                {"role": "user", "content": q},
                {"role": "assistant", "content": a}
            ]})
            .to_string()
                + "\n"
        })
        .collect()
}

/// Where a model directory keeps its chat template.
#[derive(Clone, Copy)]
enum TemplateFile {
    /// The `chat_template` field of `tokenizer_config.json` (transformers before 4.50).
    ConfigField,
    /// `chat_template.jinja`, as transformers' `save_pretrained` writes it now; the config
    /// gets a different template too, which transformers ignores when the file exists.
    Jinja,
}

/// A tiny model with the test tokenizer and [`TEMPLATE`]; returns its config and weights.
fn write_model(dir: &Path) -> (ModelConfig, Params, HfTokenizer) {
    write_model_with(dir, TemplateFile::ConfigField)
}

fn write_model_with(dir: &Path, layout: TemplateFile) -> (ModelConfig, Params, HfTokenizer) {
    let tok_dir = dir.join("tok");
    let (tok_path, vocab) = write_tokenizer(&tok_dir);
    let mut config = ModelConfig::preset("tiny").unwrap();
    config.vocab_size = vocab;
    config.max_seq_len = 64;
    let params = Params::init(&config, 3).unwrap();
    let model = dir.join("model");
    save_hf_dir(
        &model,
        &config,
        &params,
        Some(&TokenizerSource::File(tok_path.clone())),
    )
    .unwrap();
    let config_template = match layout {
        TemplateFile::ConfigField => TEMPLATE,
        TemplateFile::Jinja => {
            std::fs::write(model.join("chat_template.jinja"), TEMPLATE).unwrap();
            "{% for m in messages %}{{ m['content'] }}{% endfor %}"
        }
    };
    let tokenizer_config = serde_json::json!({
        "bos_token": "<s>", "eos_token": "</s>", "add_bos_token": true,
        "chat_template": config_template
    });
    std::fs::write(
        model.join("tokenizer_config.json"),
        tokenizer_config.to_string(),
    )
    .unwrap();
    (config, params, HfTokenizer::from_file(&tok_path).unwrap())
}

/// Mean cross-entropy over the reply tokens (and EOS) of `exchanges`, each cut to `SEQ + 1`
/// tokens, from the reference forward; and how many were cut.
fn expected_loss(
    config: &ModelConfig,
    params: &Params,
    tok: &HfTokenizer,
    exchanges: &[(String, String)],
) -> (f64, usize) {
    let (mut sum, mut n, mut cut) = (0.0f64, 0usize, 0usize);
    for (q, a) in exchanges {
        let (prompt, mut all) = render(tok, q, a);
        if all.len() > SEQ + 1 {
            all.truncate(SEQ + 1);
            cut += 1;
        }
        if all.len() <= prompt.len() {
            continue;
        }
        let logits = reference::forward(config, params, &[all[..all.len() - 1].to_vec()]).unwrap();
        for p in prompt.len()..all.len() {
            let row = logits.at(0, p - 1);
            let max = row.iter().fold(f32::MIN, |m, &x| m.max(x)) as f64;
            let lse = max
                + row
                    .iter()
                    .map(|&x| (x as f64 - max).exp())
                    .sum::<f64>()
                    .ln();
            sum += lse - row[all[p] as usize] as f64;
            n += 1;
        }
    }
    (sum / n as f64, cut)
}

#[test]
fn eval_on_chat_examples_is_the_reply_tokens_mean_loss() {
    let dir = tempfile::tempdir().unwrap();
    let (config, params, tok) = write_model(dir.path());
    let data = exchanges(10, 0);
    let file = dir.path().join("valid.jsonl");
    std::fs::write(&file, jsonl(&data)).unwrap();
    let model = dir.path().join("model");
    let args = [
        "eval",
        "--json",
        "--model",
        arg(&model),
        "--data",
        arg(&file),
        "--mask-prompt",
        "--seq",
        "32",
        "--batch",
        "3",
    ];
    let o = ok(&args);
    let v: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    let out = stderr(&o);
    let (want, cut) = expected_loss(&config, &params, &tok, &data);
    assert!(cut > 0, "the data should exercise truncation");
    assert!(
        out.contains(&format!("{cut} examples were longer than 33 tokens")),
        "{out}"
    );
    let got = v["loss"].as_f64().unwrap();
    println!(
        "eval {got} vs expected {want} over {} reply tokens, {cut} truncated",
        v["tokens"]
    );
    assert!(
        (got - want).abs() < 1e-4 * want,
        "eval {got} vs expected {want}"
    );
    // Without the mask every token after the first counts, so the loss differs.
    let unmasked: Vec<&str> = args
        .iter()
        .copied()
        .filter(|a| *a != "--mask-prompt")
        .collect();
    let o = ok(&unmasked);
    let v: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert!((v["loss"].as_f64().unwrap() - want).abs() > 1e-3);
}

/// A model saved by current transformers keeps its template in `chat_template.jinja`; eval
/// renders with it (not the config's field, nor the plain format), and `import` carries it
/// into the run directory.
#[test]
fn eval_uses_the_chat_template_jinja_transformers_saves_and_import_keeps_it() {
    let dir = tempfile::tempdir().unwrap();
    let (config, params, tok) = write_model_with(dir.path(), TemplateFile::Jinja);
    let data = exchanges(6, 1);
    let file = dir.path().join("valid.jsonl");
    std::fs::write(&file, jsonl(&data)).unwrap();
    let model = dir.path().join("model");
    let run = dir.path().join("run");
    ok(&["import", "--out", arg(&run), arg(&model)]);
    let (want, _) = expected_loss(&config, &params, &tok, &data);
    for source in [&model, &run] {
        let o = ok(&[
            "eval",
            "--json",
            "--model",
            arg(source),
            "--data",
            arg(&file),
            "--mask-prompt",
            "--seq",
            "32",
        ]);
        let v: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
        let got = v["loss"].as_f64().unwrap();
        assert!(
            (got - want).abs() < 1e-4 * want,
            "eval of {} gives {got}, the template's loss is {want}",
            source.display()
        );
    }
}

#[test]
fn train_on_a_chat_data_dir_with_mask_prompt_lowers_validation_loss() {
    let dir = tempfile::tempdir().unwrap();
    let (_, _, tok) = write_model(dir.path());
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let train = exchanges(40, 0);
    std::fs::write(data.join("train.jsonl"), jsonl(&train)).unwrap();
    std::fs::write(data.join("valid.jsonl"), jsonl(&exchanges(8, 100))).unwrap();
    std::fs::write(
        data.join("test.jsonl"),
        "test.jsonl is never read by train\n",
    )
    .unwrap();
    let run = dir.path().join("run");
    let o = ok(&[
        "train",
        "--init-from",
        arg(&dir.path().join("model")),
        "--data",
        arg(&data),
        "--mask-prompt",
        "--steps",
        "30",
        "--batch",
        "4",
        "--seq",
        "32",
        "--lr",
        "3e-3",
        "--warmup",
        "2",
        "--eval-every",
        "10",
        "--sample-tokens",
        "0",
        "--out",
        arg(&run),
    ]);
    let out = stdout(&o);
    let cut = train
        .iter()
        .chain(&exchanges(8, 100))
        .filter(|(q, a)| render(&tok, q, a).1.len() > SEQ + 1)
        .count();
    assert!(
        out.contains(&format!(
            "{cut} examples were longer than 33 tokens and were truncated"
        )),
        "{out}"
    );
    let metrics = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    let val: Vec<f64> = metrics
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["val_loss"].as_f64())
        .collect();
    assert_eq!(val.len(), 3, "{metrics}");
    println!("validation loss at steps 10, 20, 30: {val:?}; {cut} truncated");
    assert!(
        val[2] < val[0] - 0.5,
        "validation loss did not fall: {val:?}"
    );
    let run_json = std::fs::read_to_string(run.join("run.json")).unwrap();
    assert!(run_json.contains("\"mask_prompt\": true"), "{run_json}");
    // The run keeps its data flags and chat template: --resume needs none of them.
    let o = ok(&[
        "train",
        "--resume",
        "--steps",
        "32",
        "--sample-tokens",
        "0",
        "--out",
        arg(&run),
    ]);
    let out = stdout(&o);
    assert!(
        out.contains("resuming") && out.contains("examples were longer"),
        "{out}"
    );
    let metrics = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    assert_eq!(metrics.lines().count(), 32);
}

fn strs(argv: &[String]) -> Vec<&str> {
    argv.iter().map(String::as_str).collect()
}

#[test]
fn bad_fine_tuning_data_is_refused_before_any_work() {
    let dir = tempfile::tempdir().unwrap();
    write_model(dir.path());
    let model = dir.path().join("model");
    let bad = dir.path().join("bad.jsonl");
    let mut lines = jsonl(&exchanges(2, 0));
    lines += "{\"messages\": [{\"role\": \"user\"}]}\n";
    std::fs::write(&bad, lines).unwrap();
    let train = |data: &Path, extra: &[&str]| {
        let out = dir.path().join("out");
        let mut args = vec![
            "train",
            "--data",
            arg(data),
            "--steps",
            "1",
            "--out",
            arg(&out),
        ];
        args.extend_from_slice(extra);
        let argv: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        (argv, out)
    };

    let (argv, out) = train(&bad, &["--init-from", arg(&model)]);
    let err = fails_with(&strs(&argv), "bad.jsonl line 3");
    assert!(err.contains("messages[0].content"), "{err}");
    assert!(!out.exists(), "a refused run must not create --out");

    let empty = dir.path().join("empty.jsonl");
    std::fs::write(&empty, "\n").unwrap();
    let (argv, _) = train(&empty, &["--init-from", arg(&model)]);
    fails_with(&strs(&argv), "empty.jsonl holds no examples");

    let missing = dir.path().join("missing.jsonl");
    let (argv, _) = train(&missing, &["--init-from", arg(&model)]);
    fails_with(&strs(&argv), "missing.jsonl");

    // A preset has no tokenizer, and examples never fall back to bytes.
    let good = dir.path().join("good.jsonl");
    std::fs::write(&good, jsonl(&exchanges(4, 0))).unwrap();
    let (argv, out) = train(&good, &[]);
    fails_with(&strs(&argv), "pass --tokenizer");
    assert!(!out.exists());

    let text = dir.path().join("corpus.txt");
    common::write_text(&text);
    let (argv, _) = train(&text, &["--init-from", arg(&model), "--mask-prompt"]);
    fails_with(&strs(&argv), "--mask-prompt needs fine-tuning examples");
    fails_with(
        &[
            "eval",
            "--model",
            arg(&model),
            "--data",
            arg(&text),
            "--mask-prompt",
        ],
        "--mask-prompt needs fine-tuning examples",
    );
}
