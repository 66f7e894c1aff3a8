//! Fine-tuning examples as token ids with a per-token loss mask, truncated to a length and
//! padded into batches whose padding counts for nothing.
//!
//! Rendering: `{"text"}` is `[BOS] text [EOS]` (BOS when the tokenizer has one), as mlx-lm
//! encodes it. `{"prompt", "completion"}` is a user message and an assistant reply rendered
//! with the chat template; without a template it is `[BOS] prompt completion [EOS]`.
//! `{"messages"}` is rendered with the chat template, or [`crate::chat::PLAIN_TEMPLATE`] without one.
//!
//! Masking (`mask_prompt`): only assistant tokens count. The tokens of assistant turn `i`
//! are those between the rendering of `messages[..i]` with the generation prompt and that of
//! `messages[..=i]`, found by token prefix, so every assistant turn counts (mlx-lm counts
//! only the last one) and the header the template adds before a reply does not.
//!
//! Batching pads every row to the fixed `seq + 1` rather than packing examples together: the
//! device kernels are compiled for one sequence length, and packing would let attention see
//! across examples without a block-diagonal mask the causal kernels do not have.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use crate::chat::ChatTemplate;
use crate::error::{DataError, Result};
use crate::jsonl::Example;
use crate::tokenizer::Tokenizer;

/// One example's tokens and which of them count in the loss.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MaskedTokens {
    /// Token ids, special tokens included.
    pub tokens: Vec<u32>,
    /// `counts[p]`: whether predicting `tokens[p]` (from `tokens[..p]`) counts in the loss;
    /// `counts[0]` is always false since nothing predicts the first token.
    pub counts: Vec<bool>,
}

impl MaskedTokens {
    /// Tokens that count in the loss.
    pub fn counted(&self) -> usize {
        self.counts.iter().filter(|&&c| c).count()
    }

    /// Cuts to at most `max_tokens`; returns whether anything was cut.
    pub fn truncate(&mut self, max_tokens: usize) -> bool {
        let cut = self.tokens.len() > max_tokens;
        self.tokens.truncate(max_tokens);
        self.counts.truncate(max_tokens);
        cut
    }
}

/// How many examples [`ExampleEncoder::encode_all`] had to shorten or leave without targets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EncodeSummary {
    /// Examples longer than the limit, cut to it.
    pub truncated: usize,
    /// Examples with no token left that counts (e.g. a prompt longer than the limit).
    pub without_targets: usize,
}

impl EncodeSummary {
    /// The one-line report for users, `None` when nothing happened.
    pub fn message(&self, max_tokens: usize) -> Option<String> {
        (self.truncated > 0).then(|| {
            let mut line = format!(
                "{} examples were longer than {max_tokens} tokens and were truncated",
                self.truncated
            );
            if self.without_targets > 0 {
                line += &format!(
                    "; {} of them have no completion tokens left and are left out (raise --seq)",
                    self.without_targets
                );
            }
            line
        })
    }
}

/// Turns [`Example`]s into [`MaskedTokens`] with a tokenizer and (optionally) a chat template.
pub struct ExampleEncoder<'a> {
    tokenizer: &'a dyn Tokenizer,
    template: ChatTemplate,
    has_template: bool,
    /// Special-token spellings the rendered text may contain, with their ids.
    specials: Vec<(String, u32)>,
    mask_prompt: bool,
}

impl<'a> ExampleEncoder<'a> {
    /// An encoder using `template` (the model's own, e.g. from
    /// [`ChatTemplate::from_tokenizer_config`]) or, when `None`, the plain format.
    pub fn new(
        tokenizer: &'a dyn Tokenizer,
        template: Option<ChatTemplate>,
        mask_prompt: bool,
    ) -> Result<Self> {
        let has_template = template.is_some();
        let template = match template {
            Some(t) => t,
            None => ChatTemplate::plain(plain_special_tokens(tokenizer)),
        };
        let mut specials = Vec::new();
        for (name, spelling) in template.special_tokens() {
            if spelling.is_empty() {
                continue;
            }
            let ids = tokenizer.encode(spelling)?;
            let id = match (ids.as_slice(), name.as_str()) {
                ([id], _) => Some(*id),
                // A tokenizer that cannot spell its BOS/EOS (the byte tokenizer) still has ids.
                (_, "bos_token") => tokenizer.bos(),
                (_, "eos_token") => tokenizer.eos(),
                _ => None,
            };
            if let Some(id) = id {
                specials.push((spelling.clone(), id));
            }
        }
        // Longest first, so a spelling that contains another is matched whole.
        specials.sort_by_key(|(s, _)| std::cmp::Reverse(s.len()));
        Ok(ExampleEncoder {
            tokenizer,
            template,
            has_template,
            specials,
            mask_prompt,
        })
    }

    /// Whether only completion / assistant tokens count (`--mask-prompt`).
    pub fn masks_prompt(&self) -> bool {
        self.mask_prompt
    }

    /// The tokens and loss mask of one example.
    pub fn encode(&self, example: &Example) -> Result<MaskedTokens> {
        match example {
            Example::Text(text) => {
                let mut tokens: Vec<u32> = self.tokenizer.bos().into_iter().collect();
                tokens.extend(self.tokenizer.encode(text)?);
                tokens.extend(self.tokenizer.eos());
                Ok(all_count(tokens))
            }
            Example::Completion { prompt, completion } if !self.has_template => {
                let mut tokens: Vec<u32> = self.tokenizer.bos().into_iter().collect();
                tokens.extend(self.tokenizer.encode(prompt)?);
                let start = tokens.len();
                tokens.extend(self.tokenizer.encode(completion)?);
                tokens.extend(self.tokenizer.eos());
                let completion = start..usize::MAX;
                Ok(self.masked(tokens, std::slice::from_ref(&completion)))
            }
            Example::Completion { prompt, completion } => {
                let messages = [message("user", prompt), message("assistant", completion)];
                self.encode_chat(&messages, None)
            }
            Example::Chat { messages, tools } => self.encode_chat(messages, tools.as_ref()),
        }
    }

    /// Encodes every example, cutting each to `max_tokens` (`seq + 1` for training rows).
    pub fn encode_all(
        &self,
        examples: &[Example],
        max_tokens: usize,
    ) -> Result<(Vec<MaskedTokens>, EncodeSummary)> {
        let mut summary = EncodeSummary::default();
        let mut out = Vec::with_capacity(examples.len());
        for example in examples {
            let mut t = self.encode(example)?;
            if t.truncate(max_tokens) {
                summary.truncated += 1;
                if t.counted() == 0 {
                    summary.without_targets += 1;
                }
            }
            out.push(t);
        }
        Ok((out, summary))
    }

    /// The prompt a model sees to continue `messages` as the assistant: the conversation
    /// rendered with the generation prompt, as text and as token ids.
    pub fn generation_prompt(&self, messages: &[Map<String, Value>]) -> Result<(String, Vec<u32>)> {
        let text = self.template.render(messages, None, true)?;
        let tokens = self.tokenize(&text)?;
        Ok((text, tokens))
    }

    /// The token the template closes an assistant turn with (`<|im_end|>` in ChatML, EOS in
    /// the plain format): the first special token the template writes after a reply, `None`
    /// when it writes none.
    pub fn end_of_turn(&self) -> Result<Option<u32>> {
        const REPLY: &str = "\u{1}reply\u{1}";
        let messages = [message("user", "hi"), message("assistant", REPLY)];
        let text = self.template.render(&messages, None, false)?;
        let Some((_, after)) = text.rsplit_once(REPLY) else {
            return Ok(None);
        };
        let special =
            |id: &u32| self.tokenizer.is_special(*id) || self.specials.iter().any(|(_, s)| s == id);
        Ok(self.tokenize(after)?.into_iter().find(special))
    }

    fn encode_chat(
        &self,
        messages: &[Map<String, Value>],
        tools: Option<&Value>,
    ) -> Result<MaskedTokens> {
        let tokens = self.tokenize(&self.template.render(messages, tools, false)?)?;
        if !self.mask_prompt {
            return Ok(all_count(tokens));
        }
        let mut spans = Vec::new();
        for (i, m) in messages.iter().enumerate() {
            if m.get("role").and_then(Value::as_str) != Some("assistant") {
                continue;
            }
            let before = self.tokenize(&self.template.render(&messages[..i], tools, true)?)?;
            let through = self.tokenize(&self.template.render(&messages[..=i], tools, false)?)?;
            spans.push(common_prefix(&before, &tokens)..common_prefix(&through, &tokens));
        }
        Ok(self.masked(tokens, &spans))
    }

    /// `counts` true inside `spans` (or everywhere after the first token without masking).
    fn masked(&self, tokens: Vec<u32>, spans: &[std::ops::Range<usize>]) -> MaskedTokens {
        if !self.mask_prompt {
            return all_count(tokens);
        }
        let counts = (0..tokens.len())
            .map(|p| p > 0 && spans.iter().any(|s| s.contains(&p)))
            .collect();
        MaskedTokens { tokens, counts }
    }

    /// Token ids of rendered text: special-token spellings become their ids, the text between
    /// them is encoded normally.
    fn tokenize(&self, text: &str) -> Result<Vec<u32>> {
        let mut ids = Vec::new();
        let mut rest = text;
        while !rest.is_empty() {
            let next = self
                .specials
                .iter()
                .filter_map(|(s, id)| rest.find(s.as_str()).map(|at| (at, s.len(), *id)))
                .min_by_key(|&(at, len, _)| (at, std::cmp::Reverse(len)));
            match next {
                Some((at, len, id)) => {
                    if at > 0 {
                        ids.extend(self.tokenizer.encode(&rest[..at])?);
                    }
                    ids.push(id);
                    rest = &rest[at + len..];
                }
                None => {
                    ids.extend(self.tokenizer.encode(rest)?);
                    break;
                }
            }
        }
        Ok(ids)
    }
}

/// Placeholder spellings for the plain format; they map to the tokenizer's BOS/EOS ids, and are
/// empty when it has none.
fn plain_special_tokens(tokenizer: &dyn Tokenizer) -> BTreeMap<String, String> {
    let spell = |present: bool, s: &str| {
        if present {
            s.to_string()
        } else {
            String::new()
        }
    };
    BTreeMap::from([
        (
            "bos_token".to_string(),
            spell(tokenizer.bos().is_some(), "<s>"),
        ),
        (
            "eos_token".to_string(),
            spell(tokenizer.eos().is_some(), "</s>"),
        ),
    ])
}

fn all_count(tokens: Vec<u32>) -> MaskedTokens {
    let counts = (0..tokens.len()).map(|p| p > 0).collect();
    MaskedTokens { tokens, counts }
}

fn message(role: &str, content: &str) -> Map<String, Value> {
    match json!({"role": role, "content": content}) {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

fn common_prefix(a: &[u32], b: &[u32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

/// Checks a batch of examples fits rows of `seq + 1` tokens, naming the fix when not.
pub(crate) fn check_fits(example: &MaskedTokens, seq: usize) -> Result<()> {
    if example.tokens.len() > seq + 1 {
        return Err(DataError::Config(format!(
            "an example of {} tokens does not fit a row of --seq {seq} + 1; truncate the \
             examples with ExampleEncoder::encode_all(.., seq + 1) first",
            example.tokens.len()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tokenizer::ByteTokenizer;

    const CHATML: &str = "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>' + '\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

    fn chatml() -> ChatTemplate {
        let specials = BTreeMap::from([("eos_token".to_string(), "<|im_end|>".to_string())]);
        ChatTemplate::new(CHATML, specials).unwrap()
    }

    fn bytes(s: &str) -> Vec<u32> {
        s.bytes().map(u32::from).collect()
    }

    fn chat(turns: &[(&str, &str)]) -> Example {
        let messages = turns.iter().map(|(r, c)| message(r, c)).collect();
        Example::Chat {
            messages,
            tools: None,
        }
    }

    fn counted(t: &MaskedTokens) -> Vec<u32> {
        t.tokens
            .iter()
            .zip(&t.counts)
            .filter(|(_, &c)| c)
            .map(|(&id, _)| id)
            .collect()
    }

    const EOS: u32 = ByteTokenizer::EOS;
    const BOS: u32 = ByteTokenizer::BOS;

    #[test]
    fn chatml_renders_with_its_special_tokens_and_masks_all_but_assistant_turns() {
        let tok = ByteTokenizer;
        let enc = ExampleEncoder::new(&tok, Some(chatml()), true).unwrap();
        let t = enc
            .encode(&chat(&[
                ("user", "hi"),
                ("assistant", "yo"),
                ("user", "ok?"),
                ("assistant", "ok"),
            ]))
            .unwrap();
        let expected = [
            bytes("<|im_start|>user\nhi"),
            vec![EOS],
            bytes("\n<|im_start|>assistant\nyo"),
            vec![EOS],
            bytes("\n<|im_start|>user\nok?"),
            vec![EOS],
            bytes("\n<|im_start|>assistant\nok"),
            vec![EOS],
            bytes("\n"),
        ]
        .concat();
        assert_eq!(t.tokens, expected);
        let answers = [
            bytes("yo"),
            vec![EOS],
            bytes("\n"),
            bytes("ok"),
            vec![EOS],
            bytes("\n"),
        ]
        .concat();
        assert_eq!(counted(&t), answers);

        let unmasked = ExampleEncoder::new(&tok, Some(chatml()), false).unwrap();
        let u = unmasked
            .encode(&chat(&[("user", "hi"), ("assistant", "yo")]))
            .unwrap();
        assert_eq!(u.counted(), u.tokens.len() - 1);
        assert!(!u.counts[0]);
    }

    #[test]
    fn completions_use_the_template_as_a_user_and_an_assistant_message() {
        let tok = ByteTokenizer;
        let enc = ExampleEncoder::new(&tok, Some(chatml()), true).unwrap();
        let t = enc
            .encode(&Example::Completion {
                prompt: "2+2=".into(),
                completion: "4".into(),
            })
            .unwrap();
        assert_eq!(
            t.tokens,
            [
                bytes("<|im_start|>user\n2+2="),
                vec![EOS],
                bytes("\n<|im_start|>assistant\n4"),
                vec![EOS],
                bytes("\n")
            ]
            .concat()
        );
        assert_eq!(counted(&t), [bytes("4"), vec![EOS], bytes("\n")].concat());
    }

    #[test]
    fn without_a_template_the_plain_formats_apply() {
        let tok = ByteTokenizer;
        let enc = ExampleEncoder::new(&tok, None, true).unwrap();
        let t = enc.encode(&Example::Text("ab".into())).unwrap();
        assert_eq!(t.tokens, [BOS, 97, 98, EOS]);
        assert_eq!(t.counts, [false, true, true, true]);

        let t = enc
            .encode(&Example::Completion {
                prompt: "Q".into(),
                completion: "A".into(),
            })
            .unwrap();
        assert_eq!(t.tokens, [BOS, 81, 65, EOS]);
        assert_eq!(counted(&t), [65, EOS]);

        let t = enc
            .encode(&chat(&[("user", "hi"), ("assistant", "yo")]))
            .unwrap();
        assert_eq!(
            t.tokens,
            [vec![BOS], bytes("user: hi\nassistant: yo\n"), vec![EOS]].concat()
        );
        assert_eq!(counted(&t), [bytes("yo\n"), vec![EOS]].concat());
    }

    #[test]
    fn long_examples_are_truncated_and_counted() {
        let tok = ByteTokenizer;
        let enc = ExampleEncoder::new(&tok, None, true).unwrap();
        let examples = [
            Example::Text("short".into()),
            Example::Text("a much longer text".into()),
            Example::Completion {
                prompt: "a very long prompt".into(),
                completion: "x".into(),
            },
        ];
        let (encoded, summary) = enc.encode_all(&examples, 8).unwrap();
        assert!(encoded
            .iter()
            .all(|e| e.tokens.len() <= 8 && e.counts.len() == e.tokens.len()));
        assert_eq!(encoded[0].tokens.len(), 7);
        assert_eq!(
            summary,
            EncodeSummary {
                truncated: 2,
                without_targets: 1
            }
        );
        let line = summary.message(8).unwrap();
        assert!(
            line.starts_with("2 examples were longer than 8 tokens"),
            "{line}"
        );
        assert!(EncodeSummary::default().message(8).is_none());
    }
}
