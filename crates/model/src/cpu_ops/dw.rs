//! Weight-gradient GEMMs (`dW += dY · Xᵀ`) as jobs for a worker thread, so the dW of layer L
//! runs on the CPU while the device computes the backward of layer L−1 (ane-reference §6.10).
//!
//! Jobs run one after another in the order they were sent, each GEMM with a fixed summation
//! order, so the gradients are bit-reproducible run to run.

use std::sync::mpsc::Receiver;

use crate::error::Result;
use crate::params::Linear;

use super::gemm::weight_grad;

/// The matrix gradients of one layer, borrowed for the length of one backward pass and
/// indexed by `Linear as usize`.
pub type MatrixGrads<'g> = [&'g mut [f32]; 7];

/// One weight-gradient product. `dy [out][S]` and `x [in][S]` are `[C][S]` activations.
#[derive(Clone, Copy, Debug)]
pub enum DwJob<'a> {
    /// `layers[layer].weight += dy · xᵀ`.
    Layer {
        layer: usize,
        weight: Linear,
        dy: &'a [f32],
        x: &'a [f32],
    },
    /// Classifier `[V][D] += dlogits · xfᵀ`, with `dlogits [V][S]` and `xf [D][S]`.
    Classifier { dlogits: &'a [f32], xf: &'a [f32] },
}

/// Runs jobs from `jobs` until every sender is gone. Returns the first failure, after
/// draining the channel so senders never block on a dead worker.
pub fn run_worker(
    mut layers: Vec<MatrixGrads<'_>>,
    classifier: &mut [f32],
    s: usize,
    jobs: Receiver<DwJob<'_>>,
) -> Result<()> {
    let mut outcome = Ok(());
    for job in jobs {
        if outcome.is_err() {
            continue;
        }
        outcome = match job {
            DwJob::Layer {
                layer,
                weight,
                dy,
                x,
            } => match layers.get_mut(layer) {
                Some(g) => weight_grad(g[weight as usize], dy, x, s),
                None => Err(crate::error::ModelError::Input(format!(
                    "weight-gradient job for layer {layer}, but the model has {} layers",
                    layers.len()
                ))),
            },
            DwJob::Classifier { dlogits, xf } => weight_grad(classifier, dlogits, xf, s),
        };
    }
    outcome
}
