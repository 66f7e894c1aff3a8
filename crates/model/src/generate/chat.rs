//! Chatting with a model: each user message is added to a [`Conversation`], the whole chat is
//! rendered with the model's chat template and generated after, and the reply ends at a stop
//! token ([`stop_tokens`]). Every turn prefills the rendered chat afresh, so a history the
//! template renders differently once it grows (or that was cut to fit) is always seen exactly
//! as the template writes it.

use anetrain_data::{ChatPrompt, ChatTemplate, Conversation, StreamDecoder, Tokenizer};
use anetrain_device::Device;

use super::generator::{GenerationStats, Generator};
use super::sampler::SamplingOptions;
use crate::config::ModelConfig;
use crate::error::{ModelError, Result};
use crate::params::Params;

/// The tokens generation stops at: the tokenizer's EOS, the `eos_token_id`s of `config.json`
/// and `generation_config.json`, and the chat template's end-of-turn token (`<|im_end|>`, ...).
pub fn stop_tokens(
    config: &ModelConfig,
    tokenizer: Option<&dyn Tokenizer>,
    end_of_turn: Option<u32>,
) -> Vec<u32> {
    let mut stop: Vec<u32> = tokenizer.and_then(|t| t.eos()).into_iter().collect();
    for id in config.special_tokens.eos.iter().copied().chain(end_of_turn) {
        if !stop.contains(&id) {
            stop.push(id);
        }
    }
    stop
}

/// The context a chat holds unless told otherwise (capped at the model's `max_seq_len`): the
/// KV cache grows with it, and few chats need more.
pub const DEFAULT_CONTEXT: usize = 2048;

/// What a [`Chat`] reports while it answers.
pub enum ChatEvent<'e> {
    /// The prompt the model is about to see (with how many old exchanges were dropped).
    Prompt(&'e ChatPrompt),
    /// More of the reply, as soon as it is complete text.
    Text(&'e str),
}

/// What one [`Chat::say`] produced.
pub struct ChatReply {
    /// The whole reply, without the stop token.
    pub text: String,
    /// Prompt and generation statistics.
    pub stats: GenerationStats,
}

/// A model, its tokenizer and a chat history (see the module docs).
pub struct Chat<'a> {
    generator: Generator,
    conversation: Conversation<'a>,
    tokenizer: &'a dyn Tokenizer,
    stop: Vec<u32>,
    max_tokens: usize,
    options: SamplingOptions,
}

/// How a [`Chat`] talks: its template, system message and sampling.
pub struct ChatOptions {
    /// The model's chat template, or `None` for the plain format.
    pub template: Option<ChatTemplate>,
    /// The system message that opens every prompt.
    pub system: Option<String>,
    /// Tokens the prompt plus a reply may hold (at most the model's `max_seq_len`).
    pub context: usize,
    /// The longest reply, in tokens.
    pub max_tokens: usize,
    /// How replies are sampled.
    pub sampling: SamplingOptions,
}

impl<'a> Chat<'a> {
    /// Compiles the decode kernels for `options.context` tokens on `device` and starts an
    /// empty chat.
    pub fn new(
        config: &ModelConfig,
        params: Params,
        device: Box<dyn Device>,
        tokenizer: &'a dyn Tokenizer,
        options: ChatOptions,
    ) -> Result<Self> {
        options.sampling.validate()?;
        if options.context < 2 || options.context > config.max_seq_len {
            return Err(ModelError::Options(format!(
                "a context of {} tokens is outside 2..={} (the model's max_seq_len); pass a \
                 --context in that range",
                options.context, config.max_seq_len
            )));
        }
        if options.max_tokens == 0 {
            return Err(ModelError::Options(
                "--max-tokens 0 leaves no room for a reply; pass 1 or more".into(),
            ));
        }
        let conversation = Conversation::new(tokenizer, options.template, options.system)?;
        let stop = stop_tokens(config, Some(tokenizer), conversation.end_of_turn()?);
        let mut generator = Generator::new(config, params, device, options.context)?;
        generator.set_stop_tokens(&stop);
        Ok(Chat {
            generator,
            conversation,
            tokenizer,
            stop,
            max_tokens: options.max_tokens,
            options: options.sampling,
        })
    }

    /// The tokens a reply ends at.
    pub fn stop_tokens(&self) -> &[u32] {
        &self.stop
    }

    /// Answers `user`: reports the prompt, then the reply text as it is generated; `on_event`
    /// returning false ends the reply early. The prompt keeps room for the longest reply, at
    /// most half the context; older exchanges are dropped to make it fit.
    pub fn say(
        &mut self,
        user: &str,
        mut on_event: impl FnMut(ChatEvent<'_>) -> bool,
    ) -> Result<ChatReply> {
        let context = self.generator.max_seq();
        let room = context - self.max_tokens.min(context / 2);
        let Chat {
            generator,
            conversation,
            tokenizer,
            max_tokens,
            options,
            ..
        } = self;
        let mut stats = None;
        let text = conversation.turn(user, room, |prompt| -> Result<String> {
            if !on_event(ChatEvent::Prompt(prompt)) {
                return Ok(String::new());
            }
            let budget = (*max_tokens).min(context - prompt.tokens.len());
            // The reply is decoded as a text of its own, as `transformers` decodes it.
            let mut decoder = StreamDecoder::new(*tokenizer);
            let mut reply = String::new();
            let mut failure = None;
            let mut going = true;
            let s = generator.generate(&prompt.tokens, budget, *options, |id| {
                match decoder.push(id) {
                    Ok(Some(t)) => {
                        reply.push_str(&t);
                        going = on_event(ChatEvent::Text(&t));
                    }
                    Ok(None) => {}
                    Err(e) => {
                        failure = Some(e);
                        going = false;
                    }
                }
                going
            })?;
            if let Some(e) = failure {
                return Err(e.into());
            }
            let rest = decoder.finish()?;
            if !rest.is_empty() && going {
                reply.push_str(&rest);
                on_event(ChatEvent::Text(&rest));
            }
            stats = Some(s);
            Ok(reply)
        })?;
        let stats = stats.unwrap_or(GenerationStats {
            prompt_tokens: 0,
            generated_tokens: 0,
            prefill_ms: 0.0,
            decode_tokens_per_s: 0.0,
        });
        Ok(ChatReply { text, stats })
    }
}
