//! A chat with a model: the system message and the exchanges so far, rendered with the model's
//! chat template (or the plain format) into the prompt for the next reply, the oldest exchanges
//! dropped when the prompt outgrows the room the caller has.

use serde_json::{json, Map, Value};

use crate::chat::ChatTemplate;
use crate::error::{DataError, Result};
use crate::finetune::ExampleEncoder;
use crate::tokenizer::Tokenizer;

/// What the model is given to answer one user message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChatPrompt {
    /// The rendered conversation, ending with the assistant header.
    pub text: String,
    /// Its token ids, special tokens included.
    pub tokens: Vec<u32>,
    /// Exchanges (user message and reply) dropped from the start of the history to make room.
    pub dropped: usize,
}

/// The history of one chat (see the module docs).
pub struct Conversation<'a> {
    encoder: ExampleEncoder<'a>,
    system: Option<String>,
    exchanges: Vec<(String, String)>,
}

impl<'a> Conversation<'a> {
    /// An empty chat rendered with `template` (the model's own) or, when `None`, the plain
    /// format; `system` is kept as the first message of every prompt.
    pub fn new(
        tokenizer: &'a dyn Tokenizer,
        template: Option<ChatTemplate>,
        system: Option<String>,
    ) -> Result<Self> {
        Ok(Conversation {
            encoder: ExampleEncoder::new(tokenizer, template, false)?,
            system,
            exchanges: Vec::new(),
        })
    }

    /// The token the template ends an assistant turn with, if it writes one (see
    /// [`ExampleEncoder::end_of_turn`]).
    pub fn end_of_turn(&self) -> Result<Option<u32>> {
        self.encoder.end_of_turn()
    }

    /// Exchanges in the history.
    pub fn len(&self) -> usize {
        self.exchanges.len()
    }

    /// Whether nothing has been said yet.
    pub fn is_empty(&self) -> bool {
        self.exchanges.is_empty()
    }

    /// One turn: renders the history plus `user` into a prompt of at most `max_prompt_tokens`
    /// tokens (dropping the oldest exchanges for good while it is longer), hands it to
    /// `respond`, and records the reply it returns. A message that does not fit even without
    /// history is an error naming its length, and the history is left as it was.
    pub fn turn<E: From<DataError>>(
        &mut self,
        user: &str,
        max_prompt_tokens: usize,
        respond: impl FnOnce(&ChatPrompt) -> std::result::Result<String, E>,
    ) -> std::result::Result<String, E> {
        let mut dropped = 0;
        let prompt = loop {
            let messages = self.messages(&self.exchanges[dropped..], user);
            let (text, tokens) = self.encoder.generation_prompt(&messages).map_err(E::from)?;
            if tokens.len() <= max_prompt_tokens {
                break ChatPrompt {
                    text,
                    tokens,
                    dropped,
                };
            }
            if dropped == self.exchanges.len() {
                return Err(E::from(DataError::Config(format!(
                    "the message makes a prompt of {} tokens but the model has room for {} \
                     (its context less the reply); send a shorter message or a shorter --system",
                    tokens.len(),
                    max_prompt_tokens
                ))));
            }
            dropped += 1;
        };
        let reply = respond(&prompt)?;
        self.exchanges.drain(..prompt.dropped);
        self.exchanges.push((user.to_string(), reply.clone()));
        Ok(reply)
    }

    fn messages(&self, history: &[(String, String)], user: &str) -> Vec<Map<String, Value>> {
        let mut out = Vec::with_capacity(2 * history.len() + 2);
        if let Some(system) = &self.system {
            out.push(message("system", system));
        }
        for (u, a) in history {
            out.push(message("user", u));
            out.push(message("assistant", a));
        }
        out.push(message("user", user));
        out
    }
}

fn message(role: &str, content: &str) -> Map<String, Value> {
    match json!({"role": role, "content": content}) {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tokenizer::ByteTokenizer;
    use std::collections::BTreeMap;

    const CHATML: &str = "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>' + '\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

    #[test]
    fn turns_accumulate_and_the_oldest_are_dropped_to_fit() {
        let specials = BTreeMap::from([("eos_token".to_string(), "<|im_end|>".to_string())]);
        let template = ChatTemplate::new(CHATML, specials).unwrap();
        let mut chat = Conversation::new(&ByteTokenizer, Some(template), Some("S".into())).unwrap();
        assert_eq!(chat.end_of_turn().unwrap(), Some(ByteTokenizer::EOS));
        let mut seen = Vec::new();
        for (user, reply) in [("a", "b"), ("c", "d")] {
            let got = chat
                .turn(user, 1000, |p| {
                    seen.push(p.clone());
                    Ok::<_, DataError>(reply.to_string())
                })
                .unwrap();
            assert_eq!(got, reply);
        }
        let second = "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\na<|im_end|>\n\
                      <|im_start|>assistant\nb<|im_end|>\n<|im_start|>user\nc<|im_end|>\n\
                      <|im_start|>assistant\n";
        assert_eq!(seen[1].text, second);
        assert_eq!(seen[1].dropped, 0);
        // `<|im_end|>` is one token (the EOS id here); everything else is bytes.
        let im_end = "<|im_end|>".len();
        assert_eq!(seen[1].tokens.len(), second.len() - 4 * (im_end - 1));

        let room = seen[1].tokens.len();
        let p = {
            let mut p = None;
            chat.turn("e", room, |x| {
                p = Some(x.clone());
                Ok::<_, DataError>("f".into())
            })
            .unwrap();
            p.unwrap()
        };
        assert_eq!(p.dropped, 1);
        assert!(p.text.contains("user\nc") && !p.text.contains("user\na"));
        assert_eq!(chat.len(), 2);

        let err = chat.turn("far too long a message", 5, |_| {
            Ok::<_, DataError>(String::new())
        });
        assert!(err.unwrap_err().to_string().contains("shorter message"));
        assert_eq!(chat.len(), 2);
    }

    #[test]
    fn without_a_template_the_plain_format_ends_turns_with_eos() {
        let chat = Conversation::new(&ByteTokenizer, None, None).unwrap();
        assert_eq!(chat.end_of_turn().unwrap(), Some(ByteTokenizer::EOS));
    }
}
