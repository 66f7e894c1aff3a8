//! The plain-Rust reference transformer as an engine: slow, fp32, and the ground truth the
//! kernel engines are tested against.

use super::{Engine, PassStats};
use crate::config::ModelConfig;
use crate::error::Result;
use crate::params::Params;
use crate::reference;

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
        let inputs: Vec<Vec<u32>> = rows.iter().map(|r| r[..seq].to_vec()).collect();
        let logits = reference::forward(&self.config, params, &inputs)?;
        let mut total = 0f64;
        for (b, row) in rows.iter().enumerate() {
            for t in 0..seq {
                let l = logits.at(b, t);
                let max = l.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let lse = max as f64
                    + l.iter().map(|&v| ((v - max) as f64).exp()).sum::<f64>().ln();
                total += lse - l[row[t + 1] as usize] as f64;
            }
        }
        let tokens = rows.len() * seq;
        Ok(PassStats {
            loss: (total / tokens.max(1) as f64) as f32,
            tokens,
        })
    }
}
