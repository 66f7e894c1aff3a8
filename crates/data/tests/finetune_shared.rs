//! Fine-tuning examples through the real Llama 2 tokenizer in `shared/data` and a Llama-2-style
//! chat template: the token ids must be what the tokenizer itself gives for the text
//! `transformers` would render, and the counted tokens must decode to the assistant's reply.
//! Skips, saying why, when the shared folder is absent.

mod common;
use common::llama2_tokenizer;

use std::collections::BTreeMap;

use anetrain_data::{ChatTemplate, Example, ExampleEncoder, ExampleFile, Tokenizer};

/// The Llama 2 chat template's logic (system prompt folded into the first user turn,
/// alternating roles enforced), written for this test.
const LLAMA2_TEMPLATE: &str = "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}{% set system_message = false %}{% endif %}{% for message in loop_messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if loop.index0 == 0 and system_message != false %}{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}{% else %}{% set content = message['content'] %}{% endif %}{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}";

fn template() -> ChatTemplate {
    let specials = BTreeMap::from([
        ("bos_token".to_string(), "<s>".to_string()),
        ("eos_token".to_string(), "</s>".to_string()),
    ]);
    ChatTemplate::new(LLAMA2_TEMPLATE, specials).unwrap()
}

fn examples(jsonl: &str) -> Vec<Example> {
    ExampleFile::parse(std::path::Path::new("train.jsonl"), jsonl)
        .unwrap()
        .examples
}

#[test]
fn shared_llama2_chat_tokens_match_the_tokenizer_on_the_rendered_text() {
    let Some(tok) = llama2_tokenizer() else {
        return;
    };
    let enc = ExampleEncoder::new(&tok, Some(template()), true).unwrap();
    let ex = examples(
        r#"{"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Capital of France?"}, {"role": "assistant", "content": "Paris."}, {"role": "user", "content": "And Italy?"}, {"role": "assistant", "content": "Rome."}]}"#,
    );
    let t = enc.encode(&ex[0]).unwrap();

    // What transformers renders, written out by hand, tokenized by the tokenizer itself
    // (which maps <s> and </s> to BOS and EOS).
    let rendered = "<s>[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nCapital of France? [/INST] Paris. </s><s>[INST] And Italy? [/INST] Rome. </s>";
    assert_eq!(t.tokens, tok.encode(rendered).unwrap());
    assert_eq!(t.tokens[0], 1);
    assert_eq!(t.tokens.iter().filter(|&&id| id == 2).count(), 2);

    // The counted tokens are the two replies with their EOS, nothing of the prompts.
    let mut spans = Vec::new();
    let mut current = Vec::new();
    for (&id, &c) in t.tokens.iter().zip(&t.counts) {
        if c {
            current.push(id);
        } else if !current.is_empty() {
            spans.push(std::mem::take(&mut current));
        }
    }
    if !current.is_empty() {
        spans.push(current);
    }
    assert_eq!(spans.len(), 2, "{spans:?}");
    for (span, reply) in spans.iter().zip(["Paris.", "Rome."]) {
        assert_eq!(span.last(), Some(&2), "each reply ends with EOS");
        assert_eq!(tok.decode(span).unwrap().trim(), reply);
    }
}

#[test]
fn shared_llama2_template_exceptions_reach_the_user() {
    let Some(tok) = llama2_tokenizer() else {
        return;
    };
    let enc = ExampleEncoder::new(&tok, Some(template()), false).unwrap();
    let ex = examples(r#"{"messages": [{"role": "assistant", "content": "hi"}]}"#);
    let err = enc.encode(&ex[0]).unwrap_err().to_string();
    assert!(err.contains("Conversation roles must alternate"), "{err}");
}

#[test]
fn shared_llama2_text_examples_are_bos_text_eos() {
    let Some(tok) = llama2_tokenizer() else {
        return;
    };
    let enc = ExampleEncoder::new(&tok, Some(template()), true).unwrap();
    let t = enc
        .encode(&examples(r#"{"text": "To be, or not to be"}"#)[0])
        .unwrap();
    let mut expected = vec![1];
    expected.extend(tok.encode("To be, or not to be").unwrap());
    expected.push(2);
    assert_eq!(t.tokens, expected);
    assert_eq!(t.counted(), expected.len() - 1);
}
