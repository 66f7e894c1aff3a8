//! Generation as every front end asks for it: a text prompt through the model's tokenizer, a
//! request checked and its generator sized before anything compiles, and the completion handed
//! out piece by piece as each token completes text. The CLI, the C library and the Python
//! package all go through here, so one model, prompt and seed give one text in each.

use anetrain_data::{StreamDecoder, Tokenizer};
use anetrain_device::Device;

use super::chat::stop_tokens;
use super::generator::{GenerationStats, Generator};
use super::sampler::SamplingOptions;
use crate::config::ModelConfig;
use crate::device_choice::DeviceChoice;
use crate::error::{ModelError, Result};
use crate::params::Params;
use crate::source::LoadedModel;

/// One piece of a streamed completion.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Piece<'a> {
    /// The token just generated; `None` for the text held back at the end (an unfinished
    /// character), which comes last and only when there is some.
    pub token: Option<u32>,
    /// The text this token completes; empty while a multi-byte character is unfinished.
    pub text: &'a str,
}

/// A prompt as a front end receives it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Prompt {
    /// Text, which the model's tokenizer encodes after its BOS ([`encode_prompt`]).
    Text(String),
    /// Token ids, used as given.
    Ids(Vec<u32>),
}

/// What [`complete`] hands out: pieces of text when the model carries a tokenizer, else ids.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Output<'a> {
    /// A token and the text it completes (see [`generate_text`]).
    Text(Piece<'a>),
    /// A token of a model without a tokenizer.
    Token(u32),
}

/// Generates up to `max_new_tokens` after `prompt` from `model` (consumed: the generator owns
/// the weights) on `device`, handing each output to `on_output` (false stops). The C library
/// and the Python package generate here.
pub fn complete(
    model: LoadedModel,
    device: DeviceChoice,
    prompt: Prompt,
    max_new_tokens: usize,
    options: SamplingOptions,
    mut on_output: impl FnMut(Output<'_>) -> bool,
) -> Result<GenerationStats> {
    options.validate()?;
    let tokenizer = model.tokenizer(None)?;
    let tok = tokenizer.as_ref().map(|t| t.tokenizer.as_ref());
    let ids = match (prompt, tok) {
        (Prompt::Ids(ids), _) => ids,
        (Prompt::Text(text), Some(tok)) => encode_prompt(tok, &text)?,
        (Prompt::Text(_), None) => {
            return Err(ModelError::Input(format!(
                "{} carries no tokenizer; pass the prompt as token ids",
                model.description
            )))
        }
    };
    let (device, _) = device.device()?;
    let mut generator = generator_for(
        &model.config,
        model.params,
        device,
        tok,
        &ids,
        max_new_tokens,
    )?;
    match tok {
        Some(tok) => Ok(generate_text(
            &mut generator,
            tok,
            &ids,
            max_new_tokens,
            options,
            |piece| on_output(Output::Text(piece)),
        )?
        .0),
        None => generator.generate(&ids, max_new_tokens, options, |id| {
            on_output(Output::Token(id))
        }),
    }
}

/// Token ids of a text prompt: the tokenizer's BOS when it has one, then the text's encoding.
pub fn encode_prompt(tokenizer: &dyn Tokenizer, text: &str) -> Result<Vec<u32>> {
    let mut ids: Vec<u32> = tokenizer.bos().into_iter().collect();
    ids.extend(tokenizer.encode(text)?);
    if ids.is_empty() {
        return Err(ModelError::Input(
            "the prompt is empty and the tokenizer has no BOS token; pass a prompt text".into(),
        ));
    }
    Ok(ids)
}

/// A generator on `device` for `max_new_tokens` after `prompt`, stopping at the
/// [`stop_tokens`].
/// The prompt is checked first (not empty, ids inside the vocabulary, no longer than the
/// model's `max_seq_len`), so a bad request fails before any kernel compiles; the cache holds
/// only as many tokens as the request can fill, which makes every step cheaper.
pub fn generator_for(
    config: &ModelConfig,
    params: Params,
    device: Box<dyn Device>,
    tokenizer: Option<&dyn Tokenizer>,
    prompt: &[u32],
    max_new_tokens: usize,
) -> Result<Generator> {
    if prompt.is_empty() {
        return Err(ModelError::Input(
            "the prompt is empty; give at least one token (e.g. BOS)".into(),
        ));
    }
    let vocab = config.vocab_size;
    if let Some(&bad) = prompt.iter().find(|&&id| id as usize >= vocab) {
        return Err(ModelError::Input(format!(
            "prompt token {bad} is outside the model's vocabulary of {vocab}; pass ids below {vocab}"
        )));
    }
    if prompt.len() > config.max_seq_len {
        return Err(ModelError::Input(format!(
            "the prompt is {} tokens but the model holds at most {} (max_seq_len); shorten the prompt",
            prompt.len(),
            config.max_seq_len
        )));
    }
    let max_seq = config
        .max_seq_len
        .min(prompt.len().saturating_add(max_new_tokens));
    let mut generator = Generator::new(config, params, device, max_seq)?;
    generator.set_stop_tokens(&stop_tokens(config, tokenizer, None));
    Ok(generator)
}

/// Generates after `prompt` and decodes as it goes: `on_piece` gets each token with the text
/// it completes and returns false to stop, then (when a character was left unfinished) the
/// held-back text with no token. Returns the statistics and the whole completion's text,
/// which is exactly the concatenation of the pieces.
pub fn generate_text(
    generator: &mut Generator,
    tokenizer: &dyn Tokenizer,
    prompt: &[u32],
    max_new_tokens: usize,
    options: SamplingOptions,
    mut on_piece: impl FnMut(Piece<'_>) -> bool,
) -> Result<(GenerationStats, String)> {
    let mut decoder = StreamDecoder::after(tokenizer, prompt);
    let mut text = String::new();
    let mut failure = None;
    let stats = generator.generate(prompt, max_new_tokens, options, |id| {
        match decoder.push(id) {
            Ok(piece) => {
                let piece = piece.unwrap_or_default();
                text.push_str(&piece);
                on_piece(Piece {
                    token: Some(id),
                    text: &piece,
                })
            }
            Err(e) => {
                failure = Some(e);
                false
            }
        }
    })?;
    if let Some(e) = failure {
        return Err(e.into());
    }
    let rest = decoder.finish()?;
    if !rest.is_empty() {
        text.push_str(&rest);
        on_piece(Piece {
            token: None,
            text: &rest,
        });
    }
    Ok((stats, text))
}

#[cfg(test)]
mod tests {
    use super::*;
    use anetrain_data::ByteTokenizer;
    use anetrain_device::{CpuDevice, Precision};

    fn tiny() -> (ModelConfig, Params) {
        let mut config = ModelConfig::preset("tiny").unwrap();
        config.vocab_size = ByteTokenizer::VOCAB_SIZE;
        let params = Params::init(&config, 3).unwrap();
        (config, params)
    }

    #[test]
    fn a_text_prompt_starts_with_bos() {
        let ids = encode_prompt(&ByteTokenizer, "Hi").unwrap();
        assert_eq!(
            ids,
            vec![ByteTokenizer::BOS, u32::from(b'H'), u32::from(b'i')]
        );
    }

    #[test]
    fn bad_prompts_fail_before_compiling() {
        let (config, params) = tiny();
        let cpu = || Box::new(CpuDevice::new(Precision::F32)) as Box<dyn Device>;
        let e = generator_for(&config, params.clone(), cpu(), None, &[], 4)
            .err()
            .unwrap();
        assert!(e.to_string().contains("prompt is empty"), "{e}");
        let e = generator_for(&config, params.clone(), cpu(), None, &[1, 100_000], 4)
            .err()
            .unwrap();
        assert!(e.to_string().contains("prompt token 100000"), "{e}");
        let long = vec![1; config.max_seq_len + 1];
        let e = generator_for(&config, params, cpu(), None, &long, 4)
            .err()
            .unwrap();
        assert!(e.to_string().contains("max_seq_len"), "{e}");
    }

    #[test]
    fn the_pieces_concatenate_to_the_decode_of_the_tokens() {
        let (config, params) = tiny();
        let tok = ByteTokenizer;
        let prompt = encode_prompt(&tok, "Once").unwrap();
        let device = Box::new(CpuDevice::new(Precision::F32));
        let mut generator =
            generator_for(&config, params, device, Some(&tok), &prompt, 12).unwrap();
        // Sampling at a high temperature draws byte ids that often form no valid UTF-8.
        let options = SamplingOptions {
            temperature: 2.0,
            seed: 5,
            ..SamplingOptions::default()
        };
        let (mut ids, mut joined) = (Vec::new(), String::new());
        let (stats, text) = generate_text(&mut generator, &tok, &prompt, 12, options, |p| {
            ids.extend(p.token);
            joined.push_str(p.text);
            true
        })
        .unwrap();
        assert_eq!(stats.generated_tokens, ids.len());
        assert_eq!(text, joined);
        let whole = tok.decode(&[prompt.clone(), ids].concat()).unwrap();
        assert_eq!(format!("{}{text}", tok.decode(&prompt).unwrap()), whole);
    }

    #[test]
    fn the_callback_stops_generation() {
        let (config, params) = tiny();
        let tok = ByteTokenizer;
        let prompt = encode_prompt(&tok, "a").unwrap();
        let device = Box::new(CpuDevice::new(Precision::F32));
        let mut generator =
            generator_for(&config, params, device, Some(&tok), &prompt, 20).unwrap();
        let mut seen = 0;
        let (stats, _) = generate_text(
            &mut generator,
            &tok,
            &prompt,
            20,
            SamplingOptions::default(),
            |p| {
                seen += usize::from(p.token.is_some());
                seen < 3
            },
        )
        .unwrap();
        assert_eq!((seen, stats.generated_tokens), (3, 3));
    }
}
