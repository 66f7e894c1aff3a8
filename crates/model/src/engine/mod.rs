//! Engines compute the loss and gradients of a batch: the part of a training step that runs on
//! a device. The trainer owns the parameters, the optimizer and the schedule, and drives any
//! engine through this one interface.

mod device;
mod reference;

pub use device::DeviceEngine;
pub use reference::ReferenceEngine;

use anetrain_data::Batch;

use crate::error::Result;
use crate::params::Params;

/// What one forward/backward pass reports.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PassStats {
    /// The batch's mean cross-entropy over its counted targets, `Σ w·CE / Σ w` (not scaled;
    /// 0 when no target counts).
    pub loss: f32,
    /// Targets that count (weight 1), the mean's denominator: to average several batches as
    /// one, weight each batch's `loss` by its `tokens`.
    pub tokens: usize,
}

/// Computes losses and gradients for one model on one device.
///
/// A batch is a [`Batch`] of rows of `seq + 1` tokens (inputs `row[..seq]`, targets
/// `row[1..]`) with optional per-target weights ([`Batch::target_weights`]: 1 counts, 0 is
/// prompt or padding; none means every target counts). Its loss is the mean over counted
/// targets of all its rows, as `transformers` and mlx-lm compute it, so a padded or masked
/// position costs nothing, not even in the gradient.
pub trait Engine: Send {
    /// A short description, e.g. `reference (fp32, plain Rust)` or `mil kernels on cpu (f32)`.
    fn describe(&self) -> String;

    /// Makes `params` the weights the next passes use (stages fp16 copies on a device). An
    /// engine is built with its weights staged; call this after every change to them.
    fn stage(&mut self, params: &Params) -> Result<()>;

    /// Forward and backward over `batch`: adds `loss_scale ×` the gradient of its mean loss to
    /// `grads`. For the mean over several micro-batches (all counted targets weighing the
    /// same), pass `loss_scale · tokens_k / Σ tokens` for micro-batch `k`.
    fn forward_backward(
        &mut self,
        params: &Params,
        batch: &Batch,
        loss_scale: f32,
        grads: &mut Params,
    ) -> Result<PassStats>;

    /// The mean loss over `batch`, without gradients.
    fn loss(&mut self, params: &Params, batch: &Batch) -> Result<PassStats>;
}
