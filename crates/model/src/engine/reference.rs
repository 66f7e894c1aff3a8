//! The plain-Rust reference transformer as an engine: slow, fp32, and the ground truth the
//! kernel engines are tested against.

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
        rows: &[Vec<u32>],
        loss_scale: f32,
        grads: &mut Params,
    ) -> Result<PassStats> {
        let (loss, g) = reference::loss_and_grads(&self.config, params, rows)?;
        for ((_, acc), (_, add)) in grads.iter_mut().into_iter().zip(g.iter()) {
            for (a, &b) in acc.data_mut().iter_mut().zip(add.data()) {
                *a += loss_scale * b;
            }
        }
        Ok(PassStats {
            loss: loss as f32,
            tokens: rows.len() * rows.first().map_or(0, |r| r.len().saturating_sub(1)),
        })
    }

    fn loss(&mut self, params: &Params, rows: &[Vec<u32>]) -> Result<PassStats> {
        let seq = rows.first().map_or(0, |r| r.len().saturating_sub(1));
        if seq == 0 || rows.iter().any(|r| r.len() != seq + 1) {
            return Err(ModelError::Input(
                "evaluation rows must all hold seq + 1 >= 2 tokens".into(),
            ));
        }
        let inputs: Vec<Vec<u32>> = rows.iter().map(|r| r[..seq].to_vec()).collect();
        let targets: Vec<u32> = rows.iter().flat_map(|r| r[1..].iter().copied()).collect();
        let logits = reference::forward(&self.config, params, &inputs)?;
        let loss = cross_entropy_forward(&logits.data, &targets, self.config.vocab_size);
        Ok(PassStats {
            loss: loss as f32,
            tokens: targets.len(),
        })
    }
}
