//! A chat through the real Llama 2 tokenizer in `shared/data` and a Llama-2-style template:
//! the end-of-turn token is the tokenizer's own `</s>`, and the prompt of a second turn is the
//! tokenizer's encoding of the text built here by hand, BOS before every `[INST]`. Skips,
//! saying why, when the shared folder is absent.

mod common;
use common::llama2_tokenizer;

use std::collections::BTreeMap;

use anetrain_data::{ChatTemplate, Conversation, DataError, Tokenizer};

/// The Llama 2 chat template's logic without its system-prompt branch, written for this test.
const LLAMA2_TEMPLATE: &str = "{% for message in messages %}{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + message['content'].strip() + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ ' '  + message['content'].strip() + ' ' + eos_token }}{% endif %}{% endfor %}";

#[test]
fn shared_llama2_chat_ends_turns_with_eos_and_prompts_match_the_tokenizer() {
    let Some(tok) = llama2_tokenizer() else {
        return;
    };
    let specials = BTreeMap::from([
        ("bos_token".to_string(), "<s>".to_string()),
        ("eos_token".to_string(), "</s>".to_string()),
    ]);
    let template = ChatTemplate::new(LLAMA2_TEMPLATE, specials).unwrap();
    let mut chat = Conversation::new(&tok, Some(template), None).unwrap();
    assert_eq!(chat.end_of_turn().unwrap(), tok.eos());
    assert_eq!(tok.eos(), Some(2));

    chat.turn("Hi there", 4096, |_| Ok::<_, DataError>("Hello!".into()))
        .unwrap();
    let mut seen = None;
    chat.turn("How are you?", 4096, |p| {
        seen = Some(p.clone());
        Ok::<_, DataError>("Fine.".into())
    })
    .unwrap();
    let p = seen.unwrap();
    assert_eq!(
        p.text,
        "<s>[INST] Hi there [/INST] Hello! </s><s>[INST] How are you? [/INST]"
    );
    // Special-token spellings become their ids; the text between them is the tokenizer's own.
    let mut want = vec![1];
    want.extend(tok.encode("[INST] Hi there [/INST] Hello! ").unwrap());
    want.extend([2, 1]);
    want.extend(tok.encode("[INST] How are you? [/INST]").unwrap());
    assert_eq!(p.tokens, want);
}
