//! Validation: the mean loss of a model over every sample of a token stream.

use std::sync::Arc;

use anetrain_data::{Batch, EvalBatches, TokenStream};
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

/// Mean loss of `params` over the samples of `seq + 1` tokens of `stream`, in batches of
/// `batch`, stopping after `max_batches` batches when it is non-zero. Each batch's mean is
/// weighted by its token count, so a partial last batch counts exactly as much as it holds.
pub fn evaluate(
    engine: &mut dyn Engine,
    params: &Params,
    stream: Arc<dyn TokenStream>,
    seq: usize,
    batch: usize,
    max_batches: usize,
) -> Result<EvalResult> {
    let mut batches = EvalBatches::new(stream, seq, batch)?;
    let mut buf = Batch::new(batch, seq);
    let (mut total, mut tokens, mut seen) = (0f64, 0usize, 0usize);
    while batches.next_batch(&mut buf)? {
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
