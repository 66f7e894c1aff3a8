//! Validation: the mean loss of a model over every sample of a token stream or every
//! fine-tuning example of a set.

use anetrain_data::{Batch, EvalSource};
use serde::{Deserialize, Serialize};

use crate::engine::Engine;
use crate::error::Result;
use crate::params::Params;

/// The result of one evaluation pass.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct EvalResult {
    /// Mean cross-entropy over every target token evaluated.
    pub loss: f32,
    /// `exp(loss)`.
    pub perplexity: f32,
    /// Number of target tokens the mean is over.
    pub tokens: usize,
}

/// Mean loss of `params` over one pass of `source` (rewound first), stopping after
/// `max_batches` batches when it is non-zero. The mean is over every counted target: each
/// batch's mean weighs its counted targets, so a partial last batch, or one with more padding,
/// counts exactly as much as it holds.
pub fn evaluate(
    engine: &mut dyn Engine,
    params: &Params,
    source: &mut dyn EvalSource,
    max_batches: usize,
) -> Result<EvalResult> {
    source.rewind();
    let (batch, seq) = source.shape();
    let mut buf = Batch::new(batch, seq);
    let (mut total, mut tokens, mut seen) = (0f64, 0usize, 0usize);
    while source.next_batch(&mut buf)? {
        let stats = engine.loss(params, &buf)?;
        total += stats.loss as f64 * stats.tokens as f64;
        tokens += stats.tokens;
        seen += 1;
        if max_batches != 0 && seen == max_batches {
            break;
        }
    }
    let loss = (total / tokens.max(1) as f64) as f32;
    Ok(EvalResult {
        loss,
        perplexity: loss.exp(),
        tokens,
    })
}
