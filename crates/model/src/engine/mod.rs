//! Engines compute the loss and gradients of a batch: the part of a training step that runs on
//! a device. The trainer owns the parameters, the optimizer and the schedule, and drives any
//! engine through this one interface.

mod device;
mod reference;

pub use device::DeviceEngine;
pub use reference::ReferenceEngine;

use crate::error::Result;
use crate::params::Params;

/// What one forward/backward pass reports.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PassStats {
    /// Mean cross-entropy over every position of the batch (not scaled).
    pub loss: f32,
    /// Number of token positions the loss averages over.
    pub tokens: usize,
}

/// Computes losses and gradients for one model on one device.
pub trait Engine: Send {
    /// A short description, e.g. `reference (fp32, plain Rust)` or `mil kernels on cpu (f32)`.
    fn describe(&self) -> String;

    /// Makes `params` the weights the next passes use (stages fp16 copies on a device). An
    /// engine is built with its weights staged; call this after every change to them.
    fn stage(&mut self, params: &Params) -> Result<()>;

    /// Forward and backward over `rows` (each `seq + 1` tokens: inputs `row[..seq]`, targets
    /// `row[1..]`): adds `loss_scale ×` the gradient of the mean loss to `grads`.
    fn forward_backward(
        &mut self,
        params: &Params,
        rows: &[Vec<u32>],
        loss_scale: f32,
        grads: &mut Params,
    ) -> Result<PassStats>;

    /// The mean loss over `rows`, without gradients.
    fn loss(&mut self, params: &Params, rows: &[Vec<u32>]) -> Result<PassStats>;
}
