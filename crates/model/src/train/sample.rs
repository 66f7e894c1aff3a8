//! A small text sampler for showing what a run has learned: each new token recomputes the whole
//! (truncated) context with the reference forward pass, O(n²) in the length, which is fine for
//! the few hundred tokens of a sample from a small model. Full generation with a KV cache lives
//! elsewhere.

use crate::config::ModelConfig;
use crate::error::{ModelError, Result};
use crate::params::Params;
use crate::reference;

/// Extends `prompt` by up to `max_new` tokens, stopping early after any token of `stop`. `temperature` 0 is
/// greedy; otherwise logits are divided by it and a token drawn with a generator seeded by
/// `seed`, so the same call gives the same text.
pub fn sample_tokens(
    config: &ModelConfig,
    params: &Params,
    prompt: &[u32],
    max_new: usize,
    temperature: f32,
    stop: &[u32],
    seed: u64,
) -> Result<Vec<u32>> {
    if prompt.is_empty() {
        return Err(ModelError::Input(
            "the prompt is empty; give at least one token (e.g. BOS)".into(),
        ));
    }
    let mut tokens = prompt.to_vec();
    let mut rng = seed;
    let mut probs = vec![0f64; config.vocab_size];
    for _ in 0..max_new {
        let start = tokens.len().saturating_sub(config.max_seq_len);
        let context = vec![tokens[start..].to_vec()];
        let logits = reference::forward(config, params, &context)?;
        let last = logits.at(0, context[0].len() - 1);
        let next = if temperature <= 0.0 {
            argmax(last)
        } else {
            let max = last.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let mut sum = 0.0;
            for (p, &l) in probs.iter_mut().zip(last) {
                *p = (((l - max) / temperature) as f64).exp();
                sum += *p;
            }
            draw(&probs, sum * uniform(&mut rng))
        };
        tokens.push(next);
        if stop.contains(&next) {
            break;
        }
    }
    Ok(tokens)
}

fn argmax(xs: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &x) in xs.iter().enumerate() {
        if x > xs[best] {
            best = i;
        }
    }
    best as u32
}

/// The index where the running sum of `weights` first exceeds `target`.
fn draw(weights: &[f64], target: f64) -> u32 {
    let mut acc = 0.0;
    for (i, &w) in weights.iter().enumerate() {
        acc += w;
        if acc > target {
            return i as u32;
        }
    }
    (weights.len() - 1) as u32
}

/// Uniform in [0, 1) from a SplitMix64 step on `state`.
fn uniform(state: &mut u64) -> f64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
}
