//! Engines compute the loss and gradients of a batch: the part of a training step that runs on
//! a device. The trainer owns the parameters, the optimizer and the schedule, and drives any
//! engine through this one interface.

mod device;
mod reference;

pub use device::DeviceEngine;
pub use reference::ReferenceEngine;

use anetrain_data::Batch;

use crate::error::Result;
use crate::lora::Adapter;
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

    /// Makes `params` the weights the next passes use (stages fp16 copies on a device that
    /// needs them; the CPU device reads the `params` each pass is given in place). An engine
    /// is built with its weights staged; call this after every change to them.
    fn stage(&mut self, params: &Params) -> Result<()>;

    /// Whether [`Engine::stage`] copies the block matrices into the engine, which then never
    /// reads the host's until the next staging: a frozen base's host matrices may be freed.
    /// `false` (the host's are read every pass) is always safe.
    fn holds_own_copy(&self) -> bool {
        false
    }

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

    /// Puts `adapter` on the staged weights for the next passes (`None` takes it off). Call it
    /// after every change to the adapter; it copies the adapter (megabytes) and leaves the
    /// staged base untouched.
    fn set_adapter(&mut self, adapter: Option<&Adapter>) -> Result<()>;

    /// Forward and backward over `batch` (as [`Engine::forward_backward`]) with the base frozen:
    /// adds `loss_scale ×` the gradient of the mean loss with respect to the adapter set by
    /// [`Engine::set_adapter`] to `grads` (shaped like it); the base gets no gradient at all.
    fn adapter_backward(
        &mut self,
        params: &Params,
        batch: &Batch,
        loss_scale: f32,
        grads: &mut Adapter,
    ) -> Result<PassStats>;
}

/// The adapter an engine holds, checked against the gradients an adapter pass fills.
fn adapter_for_grads<'a>(held: &'a Option<Adapter>, grads: &Adapter) -> Result<&'a Adapter> {
    let adapter = held.as_ref().ok_or_else(|| {
        crate::error::ModelError::Options(
            "an adapter pass needs an adapter on the engine; call set_adapter first".into(),
        )
    })?;
    if !adapter.same_shape(grads) {
        return Err(crate::error::ModelError::Options(
            "the adapter gradients do not have the shape of the engine's adapter; make them with Adapter::zeros_like".into(),
        ));
    }
    Ok(adapter)
}

/// The error of a full-model pass on an engine that carries an adapter: the base gradients
/// would miss the adapter's share of the backward, so the combination is refused.
fn full_pass_with_adapter() -> crate::error::ModelError {
    crate::error::ModelError::Options(
        "full-model gradients were asked for while an adapter is set; use adapter_backward, or set_adapter(None) first".into(),
    )
}
