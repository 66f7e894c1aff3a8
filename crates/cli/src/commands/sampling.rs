//! The sampling flags of every command that generates (`generate`, `chat`), written once.

use anetrain_model::generate::SamplingOptions;
use clap::Args;

/// How tokens are drawn and how many.
#[derive(Args, Clone, Copy, Debug)]
pub struct SamplingArgs {
    /// Most tokens to generate; generation also stops at EOS (or the chat template's
    /// end-of-turn token) or when the context is full.
    #[arg(long, default_value_t = 256)]
    pub max_tokens: usize,
    /// Softmax temperature; 0 is greedy.
    #[arg(long, default_value_t = 0.8)]
    pub temperature: f32,
    /// Sample only from the K most likely tokens; 0 is off.
    #[arg(long, default_value_t = 0)]
    pub top_k: usize,
    /// Sample only from the most likely tokens whose mass reaches P; 1 is off.
    #[arg(long, default_value_t = 0.95)]
    pub top_p: f32,
    /// Seed of the sampler (and of the random weights of a preset); the same seed gives the
    /// same text.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
}

impl SamplingArgs {
    /// The options these flags ask for, checked.
    pub fn options(&self) -> anyhow::Result<SamplingOptions> {
        let options = SamplingOptions {
            temperature: self.temperature,
            top_k: self.top_k,
            top_p: self.top_p,
            seed: self.seed,
        };
        options.validate()?;
        Ok(options)
    }
}
