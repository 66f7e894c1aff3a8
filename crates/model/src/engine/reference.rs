//! The plain-Rust reference transformer as an engine: slow, fp32, and the ground truth the
//! kernel engines are tested against.

use anetrain_data::Batch;

use super::{Engine, PassStats};
use crate::config::ModelConfig;
use crate::error::{ModelError, Result};
use crate::params::Params;
use crate::reference;
use crate::reference::cross_entropy::cross_entropy_forward;

/// Runs [`reference::loss_and_grads`]; needs no device and stages nothing.
pub struct ReferenceEngine {
    config: ModelConfig,
}

impl ReferenceEngine {
    pub fn new(config: &ModelConfig) -> ReferenceEngine {
        ReferenceEngine {
            config: config.clone(),
        }
    }
}

impl Engine for ReferenceEngine {
    fn describe(&self) -> String {
        "reference (fp32, plain Rust)".to_string()
    }

    fn stage(&mut self, _params: &Params) -> Result<()> {
        Ok(())
    }

    fn forward_backward(
        &mut self,
        params: &Params,
        batch: &Batch,
        loss_scale: f32,
        grads: &mut Params,
    ) -> Result<PassStats> {
        let (rows, weights) = unpack(batch);
        let (loss, g) = reference::loss_and_grads(&self.config, params, &rows, weights.as_deref())?;
        for ((_, acc), (_, add)) in grads.iter_mut().into_iter().zip(g.iter()) {
            for (a, &b) in acc.data_mut().iter_mut().zip(add.data()) {
                *a += loss_scale * b;
            }
        }
        Ok(PassStats {
            loss: loss as f32,
            tokens: batch.counted_targets(),
        })
    }

    fn loss(&mut self, params: &Params, batch: &Batch) -> Result<PassStats> {
        let (rows, weights) = unpack(batch);
        if rows.is_empty() {
            return Err(ModelError::Input("the batch has no rows".into()));
        }
        let seq = batch.seq();
        let inputs: Vec<Vec<u32>> = rows.iter().map(|r| r[..seq].to_vec()).collect();
        let targets: Vec<u32> = rows.iter().flat_map(|r| r[1..].iter().copied()).collect();
        let logits = reference::forward(&self.config, params, &inputs)?;
        let loss = cross_entropy_forward(
            &logits.data,
            &targets,
            weights.as_deref(),
            self.config.vocab_size,
        );
        Ok(PassStats {
            loss: loss as f32,
            tokens: batch.counted_targets(),
        })
    }
}

/// The filled rows of `batch` and its weights `[rows·seq]`, as the reference functions take
/// them.
fn unpack(batch: &Batch) -> (Vec<Vec<u32>>, Option<Vec<f32>>) {
    let rows = (0..batch.rows()).map(|r| batch.row(r).to_vec()).collect();
    let weights = (0..batch.rows())
        .map(|r| batch.target_weights(r).map(<[f32]>::to_vec))
        .collect::<Option<Vec<Vec<f32>>>>()
        .map(|w| w.concat());
    (rows, weights)
}
