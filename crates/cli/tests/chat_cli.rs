//! `anetrain chat` and `generate --chat` end to end, on a tiny model built so its greedy choice
//! depends only on the last token and follows a chain written here: after a newline it says
//! `h`, `i`, then the ChatML end-of-turn `<|im_end|>`, then (were it not stopped) `x`. The
//! prompts the binary shows are compared with ChatML strings built here by hand.

mod common;
use common::{anetrain, arg, fails_with, ok, stderr, stdout, write_tokenizer};

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use anetrain_data::rng::SplitMix64;
use anetrain_data::{ChatTemplate, Conversation, DataError, HfTokenizer, Tokenizer};
use anetrain_model::config::ModelConfig;
use anetrain_model::hf::save_hf_dir;
use anetrain_model::params::{Linear, Params, Tensor};
use anetrain_model::reference::model::forward;

const CHATML: &str = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

const START: &str = "--- prompt ---\n";
const END: &str = "\n--- end of prompt ---";

/// The test tokenizer plus ChatML's two special tokens, and a tokenizer_config.json with the
/// template (or none); returns the tokenizer.
fn write_chat_tokenizer(dir: &Path, template: Option<&str>) -> HfTokenizer {
    let (path, size) = write_tokenizer(dir);
    let mut json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    for (i, content) in ["<|im_start|>", "<|im_end|>"].iter().enumerate() {
        let id = size + i;
        json["model"]["vocab"][content] = id.into();
        json["added_tokens"].as_array_mut().unwrap().push(
            serde_json::json!({"id": id, "content": content, "single_word": false,
                "lstrip": false, "rstrip": false, "normalized": false, "special": true}),
        );
    }
    std::fs::write(&path, json.to_string()).unwrap();
    let mut config = serde_json::json!({"bos_token": "<s>", "eos_token": "</s>"});
    if let Some(t) = template {
        config["chat_template"] = t.into();
    }
    std::fs::write(dir.join("tokenizer_config.json"), config.to_string()).unwrap();
    HfTokenizer::from_file(&path).unwrap()
}

/// The last token of `text` (the test tokenizer puts `▁` before a text).
fn last(tokenizer: &HfTokenizer, text: &str) -> u32 {
    *tokenizer.encode(text).unwrap().last().unwrap()
}

/// A Llama model whose blocks add nothing (o_proj and down_proj are zero), so the logits are
/// the classifier applied to the normed embedding of the last token: each chain link `a → b`
/// gets `lm_head[b]` along `embed[a]`.
fn write_model(dir: &Path, tokenizer: &HfTokenizer) -> (ModelConfig, Params, Vec<u32>) {
    let config = ModelConfig {
        vocab_size: tokenizer.vocab_size(),
        max_seq_len: 256,
        ..ModelConfig::preset("tiny").unwrap()
    };
    let mut params = Params::init(&config, 7).unwrap();
    for layer in &mut params.layers {
        Linear::OProj.get_mut(layer).data_mut().fill(0.0);
        Linear::DownProj.get_mut(layer).data_mut().fill(0.0);
    }
    let (v, d) = (config.vocab_size, config.dim);
    let mut rng = SplitMix64::new(3);
    let mut normal = || {
        let u = rng.unit().max(1e-12);
        ((-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * rng.unit()).cos()) as f32
    };
    let embed: Vec<f32> = (0..v * d).map(|_| normal()).collect();
    let mut head: Vec<f32> = (0..v * d).map(|_| 0.01 * normal()).collect();
    let chain = vec![
        last(tokenizer, "a\n"),
        last(tokenizer, "h"),
        last(tokenizer, "i"),
        last(tokenizer, "<|im_end|>"),
        last(tokenizer, "x"),
    ];
    for link in chain.windows(2) {
        let e = &embed[link[0] as usize * d..][..d];
        let norm = e.iter().map(|x| x * x).sum::<f32>().sqrt();
        for (h, x) in head[link[1] as usize * d..][..d].iter_mut().zip(e) {
            *h = 10.0 * x / norm;
        }
    }
    params.embed_tokens = Tensor::from_vec(&[v, d], embed).unwrap();
    params.lm_head = Some(Tensor::from_vec(&[v, d], head).unwrap());
    save_hf_dir(dir, &config, &params, None).unwrap();
    (config, params, chain)
}

/// A ChatML model directory; the reference forward confirms the chain it was built to follow.
fn setup(dir: &Path, template: Option<&str>) -> HfTokenizer {
    let tokenizer = write_chat_tokenizer(dir, template);
    let (config, params, chain) = write_model(dir, &tokenizer);
    let mut seq = tokenizer.encode("a\n").unwrap();
    for &want in &chain[1..] {
        let logits = forward(&config, &params, &[seq.clone()]).unwrap();
        let v = config.vocab_size;
        let last = &logits.data[(seq.len() - 1) * v..][..v];
        let best = (0..v).fold(0, |b, i| if last[i] > last[b] { i } else { b }) as u32;
        assert_eq!(best, want, "the built model must follow its chain");
        seq.push(best);
    }
    tokenizer
}

/// Runs `anetrain chat` with `input` on stdin.
fn chat(args: &[&str], input: &str) -> std::process::Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_anetrain"))
        .arg("chat")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

/// The prompts `--show-prompt` framed on stderr, in order.
fn prompts(err: &str) -> Vec<String> {
    err.split(START)
        .skip(1)
        .map(|p| p.split(END).next().unwrap().to_string())
        .collect()
}

fn turn(role: &str, content: &str) -> String {
    format!("<|im_start|>{role}\n{content}<|im_end|>\n")
}

#[test]
fn two_piped_turns_see_the_chat_template_and_each_reply_stops_at_end_of_turn() {
    let tmp = tempfile::tempdir().unwrap();
    setup(tmp.path(), Some(CHATML));
    let o = chat(
        &[
            "--model",
            arg(tmp.path()),
            "--device",
            "cpu",
            "--temperature",
            "0",
            "--max-tokens",
            "8",
            "--system",
            "Be brief.",
            "--show-prompt",
        ],
        "hello\nhow are you\n",
    );
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    assert_eq!(stdout(&o), "hi\nhi\n", "{err}");
    let header = "<|im_start|>assistant\n";
    let first = turn("system", "Be brief.") + &turn("user", "hello") + header;
    let second = turn("system", "Be brief.")
        + &turn("user", "hello")
        + &turn("assistant", "hi")
        + &turn("user", "how are you")
        + header;
    assert_eq!(prompts(&err), vec![first, second]);
    assert!(!err.contains("dropped"), "{err}");
}

#[test]
fn generate_chat_prints_only_the_reply() {
    let tmp = tempfile::tempdir().unwrap();
    setup(tmp.path(), Some(CHATML));
    let o = ok(&[
        "generate",
        "--model",
        arg(tmp.path()),
        "--device",
        "cpu",
        "--temperature",
        "0",
        "--chat",
        "hello",
        "--show-prompt",
    ]);
    assert_eq!(stdout(&o), "hi\n");
    assert_eq!(
        prompts(&stderr(&o)),
        vec![turn("user", "hello") + "<|im_start|>assistant\n"]
    );
}

#[test]
fn a_chat_longer_than_the_context_drops_its_oldest_exchange_with_a_notice() {
    let tmp = tempfile::tempdir().unwrap();
    let tokenizer = setup(tmp.path(), Some(CHATML));
    let header = "<|im_start|>assistant\n";
    let full = turn("user", "hello") + &turn("assistant", "hi") + &turn("user", "bye") + header;
    let max_tokens = 8;
    // One token short of the whole chat, plus room for the reply.
    let context = tokenizer.encode(&full).unwrap().len() - 1 + max_tokens;
    let (context, max_tokens) = (context.to_string(), max_tokens.to_string());
    let o = chat(
        &[
            "--model",
            arg(tmp.path()),
            "--device",
            "cpu",
            "--temperature",
            "0",
            "--max-tokens",
            &max_tokens,
            "--context",
            &context,
            "--show-prompt",
        ],
        "hello\nbye\n",
    );
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    assert_eq!(stdout(&o), "hi\nhi\n");
    assert!(err.contains("dropped the 1 oldest exchanges"), "{err}");
    assert_eq!(prompts(&err)[1], turn("user", "bye") + header);
}

#[test]
fn without_a_chat_template_the_plain_format_is_used() {
    let tmp = tempfile::tempdir().unwrap();
    setup(tmp.path(), None);
    let o = ok(&[
        "generate",
        "--model",
        arg(tmp.path()),
        "--device",
        "cpu",
        "--temperature",
        "0",
        "--max-tokens",
        "3",
        "--chat",
        "hello",
        "--system",
        "S",
        "--show-prompt",
    ]);
    let err = stderr(&o);
    assert!(err.contains("chat format: plain"), "{err}");
    assert_eq!(
        prompts(&err),
        vec!["<s>system: S\nuser: hello\nassistant: "]
    );
}

#[test]
fn chat_errors_name_the_fix() {
    let tmp = tempfile::tempdir().unwrap();
    setup(tmp.path(), Some(CHATML));
    let model = arg(tmp.path());
    fails_with(
        &[
            "generate", "--model", model, "--prompt", "a", "--system", "S",
        ],
        "--system applies to chats only",
    );
    fails_with(
        &[
            "generate",
            "--model",
            model,
            "--chat",
            "hi",
            "--context",
            "9999",
        ],
        "max_seq_len",
    );
    let long = "hello ".repeat(60);
    fails_with(
        &[
            "generate",
            "--model",
            model,
            "--chat",
            &long,
            "--context",
            "64",
        ],
        "send a shorter message",
    );
    let bare = tmp.path().join("bare");
    let config = ModelConfig::preset("tiny").unwrap();
    save_hf_dir(&bare, &config, &Params::init(&config, 1).unwrap(), None).unwrap();
    let o = anetrain(&["generate", "--model", arg(&bare), "--chat", "hi"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("chatting needs one"), "{}", stderr(&o));
}

/// Greedy reply of the reference forward (no cache) after `prompt`: up to `max_tokens`
/// tokens, ending before a stop token, decoded as one text.
fn reference_reply(
    config: &ModelConfig,
    params: &Params,
    tokenizer: &HfTokenizer,
    prompt: &[u32],
    max_tokens: usize,
    stop: &[u32],
) -> String {
    let mut seq = prompt.to_vec();
    let mut reply = Vec::new();
    while reply.len() < max_tokens && seq.len() < config.max_seq_len {
        let logits = forward(config, params, &[seq.clone()]).unwrap();
        let v = config.vocab_size;
        let last = &logits.data[(seq.len() - 1) * v..][..v];
        let best = (0..v).fold(0, |b, i| if last[i] > last[b] { i } else { b }) as u32;
        if stop.contains(&best) {
            break;
        }
        reply.push(best);
        seq.push(best);
    }
    tokenizer.decode(&reply).unwrap()
}

#[test]
fn a_multi_turn_chat_reuses_its_cache_and_follows_the_reference_argmax() {
    let tmp = tempfile::tempdir().unwrap();
    let tokenizer = write_chat_tokenizer(tmp.path(), Some(CHATML));
    let config = ModelConfig {
        vocab_size: tokenizer.vocab_size(),
        max_seq_len: 256,
        ..ModelConfig::preset("tiny").unwrap()
    };
    // Real attention this time (every block adds to the residual), so a reply depends on the
    // whole conversation and a wrong cache, mask or position shows.
    let mut params = Params::init(&config, 11).unwrap();
    for (name, mut t) in params.iter_mut() {
        let gain = if name.contains("embed") || name.contains("lm_head") {
            20.0
        } else if t.shape().len() == 2 {
            4.0
        } else {
            1.0
        };
        t.data_mut().iter_mut().for_each(|v| *v *= gain);
    }
    save_hf_dir(tmp.path(), &config, &params, None).unwrap();
    let users = [
        "hello",
        "tell me about the cat",
        "and then what happened to it",
    ];
    let max_tokens = 10;
    let o = chat(
        &[
            "--model",
            arg(tmp.path()),
            "--device",
            "cpu",
            "--temperature",
            "0",
            "--max-tokens",
            &max_tokens.to_string(),
        ],
        &(users.join("\n") + "\n"),
    );
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");

    // The same conversation kept by the library's bookkeeping, answered by the reference.
    let template = ChatTemplate::from_tokenizer_dir(tmp.path()).unwrap();
    let mut conversation = Conversation::new(&tokenizer, template, None).unwrap();
    let stop = [2, last(&tokenizer, "<|im_end|>")];
    let mut want = String::new();
    let mut longest = 0;
    for user in users {
        let reply = conversation
            .turn(user, usize::MAX, |prompt| -> Result<String, DataError> {
                longest = longest.max(prompt.tokens.len());
                Ok(reference_reply(
                    &config,
                    &params,
                    &tokenizer,
                    &prompt.tokens,
                    max_tokens,
                    &stop,
                ))
            })
            .unwrap();
        want += &format!("{reply}\n");
    }
    assert!(
        longest > 32,
        "the last prompt ({longest} tokens) should span several chunks"
    );
    assert_eq!(stdout(&o), want, "{err}");
}
