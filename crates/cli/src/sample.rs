//! Streaming generated text to stdout, shared by `generate` and the sample at the end of
//! `train`: what is printed is exactly the tokenizer's decode of prompt + completion.

use anetrain_data::Tokenizer;
use anetrain_model::generate::{generate_text, GenerationStats, Generator, SamplingOptions};
use anyhow::Result;
use std::io::Write;

/// Prints the decode of `prompt`, then generates after it, printing the text as each token
/// completes a character; ends with a newline. Returns the statistics and the text printed.
pub fn stream_generation(
    generator: &mut Generator,
    tokenizer: &dyn Tokenizer,
    prompt: &[u32],
    max_tokens: usize,
    options: SamplingOptions,
) -> Result<(GenerationStats, String)> {
    let mut out = std::io::stdout().lock();
    let shown = tokenizer.decode(prompt)?;
    write!(out, "{shown}")?;
    out.flush()?;
    let mut failure: Option<anyhow::Error> = None;
    let (stats, text) = generate_text(
        generator,
        tokenizer,
        prompt,
        max_tokens,
        options,
        |piece| match write!(out, "{}", piece.text).and_then(|()| out.flush()) {
            Ok(()) => true,
            Err(e) => {
                failure = Some(anyhow::Error::from(e).context("showing the completion"));
                false
            }
        },
    )?;
    if let Some(e) = failure {
        return Err(e);
    }
    writeln!(out)?;
    Ok((stats, shown + &text))
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
