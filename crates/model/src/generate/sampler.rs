//! Choosing the next token from logits: greedy, or temperature / top-k / top-p (nucleus)
//! sampling with a seeded, portable random generator, so one seed always gives one text.
//!
//! The filters apply in Hugging Face's order: logits are divided by the temperature, top-k
//! keeps the k most likely tokens, top-p keeps the smallest most-likely prefix of those whose
//! probability mass reaches p, and the survivors are renormalised before the draw.

use crate::error::{ModelError, Result};
use anetrain_data::rng::SplitMix64;

/// How [`Sampler`] picks tokens.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SamplingOptions {
    /// Softmax temperature; 0 is greedy (always the most likely token).
    pub temperature: f32,
    /// Keep only the `k` most likely tokens; 0 keeps all.
    pub top_k: usize,
    /// Keep the smallest set of most likely tokens whose mass reaches `p`; 1 keeps all.
    pub top_p: f32,
    /// Seed of the random generator.
    pub seed: u64,
}

impl Default for SamplingOptions {
    /// Greedy decoding.
    fn default() -> Self {
        SamplingOptions {
            temperature: 0.0,
            top_k: 0,
            top_p: 1.0,
            seed: 0,
        }
    }
}

impl SamplingOptions {
    /// Checks the ranges; the error names the flag and its valid values.
    pub fn validate(&self) -> Result<()> {
        if !self.temperature.is_finite() || self.temperature < 0.0 {
            return Err(ModelError::Input(format!(
                "temperature {} must be a finite number ≥ 0 (0 = greedy)",
                self.temperature
            )));
        }
        if self.top_p.is_nan() || self.top_p <= 0.0 || self.top_p > 1.0 {
            return Err(ModelError::Input(format!(
                "top-p {} must be in (0, 1] (1 = off)",
                self.top_p
            )));
        }
        Ok(())
    }
}

/// Draws tokens from logits under [`SamplingOptions`]; buffers are reused across calls.
#[derive(Clone, Debug)]
pub struct Sampler {
    options: SamplingOptions,
    rng: SplitMix64,
    /// The surviving candidates `(token, probability)`, most likely first.
    candidates: Vec<(u32, f64)>,
}

impl Sampler {
    /// A sampler whose generator starts from `options.seed`.
    pub fn new(options: SamplingOptions) -> Result<Sampler> {
        options.validate()?;
        Ok(Sampler {
            options,
            rng: SplitMix64::new(options.seed),
            candidates: Vec::new(),
        })
    }

    /// The tokens that may be drawn from `logits` and their renormalised probabilities, most
    /// likely first (ties by lower id). Greedy keeps exactly the argmax with probability 1.
    /// Cost: `O(V)` for the softmax plus `O(V log V)` when top-k or top-p must sort.
    pub fn distribution(&mut self, logits: &[f32]) -> Result<&[(u32, f64)]> {
        if logits.is_empty() {
            return Err(ModelError::Input(
                "cannot sample from an empty logit vector".into(),
            ));
        }
        if let Some(bad) = logits.iter().position(|l| l.is_nan()) {
            return Err(ModelError::Input(format!(
                "logit {bad} is NaN; the model produced invalid numbers (try --device cpu to compare)"
            )));
        }
        let SamplingOptions {
            temperature,
            top_k,
            top_p,
            ..
        } = self.options;
        let c = &mut self.candidates;
        c.clear();
        if temperature == 0.0 {
            c.push((argmax(logits), 1.0));
            return Ok(c);
        }
        let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let inv_t = 1.0 / temperature as f64;
        c.extend(
            logits
                .iter()
                .enumerate()
                .map(|(i, &l)| (i as u32, ((l as f64 - max as f64) * inv_t).exp())),
        );
        let by_probability =
            |a: &(u32, f64), b: &(u32, f64)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
        if top_k > 0 && top_k < c.len() {
            c.select_nth_unstable_by(top_k - 1, by_probability);
            c.truncate(top_k);
        }
        if top_k > 0 || top_p < 1.0 {
            c.sort_unstable_by(by_probability);
        }
        normalise(c);
        if top_p < 1.0 {
            let mut mass = 0.0;
            // Rounding can leave the total a hair under p; then everything is kept.
            let keep = c
                .iter()
                .position(|&(_, p)| {
                    mass += p;
                    mass >= top_p as f64
                })
                .map_or(c.len(), |i| i + 1);
            c.truncate(keep);
            normalise(c);
        }
        Ok(c)
    }

    /// Draws the next token from `logits`.
    pub fn sample(&mut self, logits: &[f32]) -> Result<u32> {
        let u = if self.options.temperature == 0.0 {
            0.0
        } else {
            self.rng.unit()
        };
        let candidates = self.distribution(logits)?;
        let mut acc = 0.0;
        for &(token, p) in candidates {
            acc += p;
            if u < acc {
                return Ok(token);
            }
        }
        // u is just below 1 and the sum rounded lower: the last candidate is the right one.
        Ok(candidates.last().map_or(0, |&(t, _)| t))
    }
}

/// Scales the probabilities to sum to 1.
fn normalise(c: &mut [(u32, f64)]) {
    let total: f64 = c.iter().map(|&(_, p)| p).sum();
    for (_, p) in c.iter_mut() {
        *p /= total;
    }
}

/// The index of the largest logit, the lowest index on ties.
pub fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &l) in logits.iter().enumerate() {
        if l > logits[best] {
            best = i;
        }
    }
    best as u32
}
