//! Streaming generated text to stdout, shared by `generate` and the sample at the end of
//! `train`: what is printed is exactly the tokenizer's decode of prompt + completion.

use anetrain_data::{StreamDecoder, Tokenizer};
use anetrain_model::generate::{GenerationStats, Generator, SamplingOptions};
use anyhow::Result;
use std::io::Write;

/// Prints the decode of `prompt`, then generates after it, printing the text as each token
/// completes a character; ends with a newline.
pub fn stream_generation(
    generator: &mut Generator,
    tokenizer: &dyn Tokenizer,
    prompt: &[u32],
    max_tokens: usize,
    options: SamplingOptions,
) -> Result<GenerationStats> {
    let mut out = std::io::stdout().lock();
    write!(out, "{}", tokenizer.decode(prompt)?)?;
    out.flush()?;
    let mut decoder = StreamDecoder::after(tokenizer, prompt);
    let mut failure: Option<anyhow::Error> = None;
    let stats = generator.generate(prompt, max_tokens, options, |id| {
        let shown = decoder
            .push(id)
            .map_err(anyhow::Error::from)
            .and_then(|text| {
                if let Some(text) = text {
                    write!(out, "{text}")?;
                    out.flush()?;
                }
                Ok(())
            });
        match shown {
            Ok(()) => true,
            Err(e) => {
                failure = Some(e.context(format!("showing token {id}")));
                false
            }
        }
    })?;
    if let Some(e) = failure {
        return Err(e);
    }
    writeln!(out, "{}", decoder.finish()?)?;
    Ok(stats)
}

/// Generates after `prompt` without a tokenizer, printing the token ids as they come.
pub fn stream_ids(
    generator: &mut Generator,
    prompt: &[u32],
    max_tokens: usize,
    options: SamplingOptions,
) -> Result<GenerationStats> {
    let mut out = std::io::stdout().lock();
    let shown: Vec<String> = prompt.iter().map(u32::to_string).collect();
    write!(out, "{}", shown.join(" "))?;
    let mut failure = None;
    let stats = generator.generate(prompt, max_tokens, options, |id| {
        match write!(out, " {id}").and_then(|_| out.flush()) {
            Ok(()) => true,
            Err(e) => {
                failure = Some(e);
                false
            }
        }
    })?;
    if let Some(e) = failure {
        return Err(e.into());
    }
    writeln!(out)?;
    Ok(stats)
}
