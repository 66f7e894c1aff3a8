//! The plain-Rust reference transformer as an engine: slow, fp32, and the ground truth the
//! kernel engines are tested against.

use std::borrow::Cow;

use anetrain_data::Batch;

use super::{adapter_for_grads, full_pass_with_adapter, Engine, PassStats};
use crate::config::ModelConfig;
use crate::cpu_ops::{matmul, MatRef};
use crate::error::{ModelError, Result};
use crate::lora::Adapter;
use crate::params::Params;
use crate::reference;
use crate::reference::cross_entropy::cross_entropy_forward;

/// Runs [`reference::loss_and_grads`]; needs no device and stages nothing.
///
/// With an adapter it takes the independent route, so it can be the device engine's oracle:
/// the forward runs on the fused weights `W + s·B·A`, the backward computes the full `dW`, and
/// the adapter's gradients follow by the chain rule, `dA = s·Bᵀ·dW`, `dB = s·dW·Aᵀ`.
pub struct ReferenceEngine {
    config: ModelConfig,
    adapter: Option<Adapter>,
}

impl ReferenceEngine {
    pub fn new(config: &ModelConfig) -> ReferenceEngine {
        ReferenceEngine {
            config: config.clone(),
            adapter: None,
        }
    }

    /// `params` with the adapter (if any) folded in.
    fn effective<'p>(&self, params: &'p Params) -> Result<Cow<'p, Params>> {
        match &self.adapter {
            None => Ok(Cow::Borrowed(params)),
            Some(adapter) => {
                let mut fused = params.clone();
                adapter.fuse_into(&mut fused)?;
                Ok(Cow::Owned(fused))
            }
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
        if self.adapter.is_some() {
            return Err(full_pass_with_adapter());
        }
        let (rows, weights) = unpack(batch);
        let (loss, g) = reference::loss_and_grads(&self.config, params, &rows, weights.as_deref())?;
        for ((_, mut acc), (_, add)) in grads.iter_mut().into_iter().zip(g.iter()) {
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
        let fused = self.effective(params)?;
        let logits = reference::forward(&self.config, &fused, &inputs)?;
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

    fn set_adapter(&mut self, adapter: Option<&Adapter>) -> Result<()> {
        self.adapter = adapter.cloned();
        Ok(())
    }

    fn adapter_backward(
        &mut self,
        params: &Params,
        batch: &Batch,
        loss_scale: f32,
        grads: &mut Adapter,
    ) -> Result<PassStats> {
        let adapter = adapter_for_grads(&self.adapter, grads)?;
        let fused = self.effective(params)?;
        let (rows, weights) = unpack(batch);
        let (loss, dw) =
            reference::loss_and_grads(&self.config, &fused, &rows, weights.as_deref())?;
        for ((layer, target), g) in grads.modules_mut() {
            let Some(pair) = adapter.get(layer, target) else {
                continue;
            };
            let (r, d_in, d_out) = (pair.rank(), pair.d_in(), pair.d_out());
            let dw = MatRef::rows(target.get(&dw.layers[layer]).data(), d_out, d_in)?;
            let k = loss_scale * pair.scale;
            // dA [r, in] += k·Bᵀ [r, out] · dW [out, in];  dB [out, r] += k·dW · Aᵀ [in, r]
            let mut da = vec![0.0; r * d_in];
            matmul(
                &mut da,
                false,
                MatRef::rows(pair.b.data(), d_out, r)?.t(),
                dw,
            )?;
            let mut db = vec![0.0; d_out * r];
            matmul(
                &mut db,
                false,
                dw,
                MatRef::rows(pair.a.data(), r, d_in)?.t(),
            )?;
            for (acc, add) in [(g.a.data_mut(), da), (g.b.data_mut(), db)] {
                for (a, b) in acc.iter_mut().zip(add) {
                    *a += k * b;
                }
            }
        }
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
