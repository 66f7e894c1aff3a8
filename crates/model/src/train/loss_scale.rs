//! Dynamic loss scaling, so fp16 gradients on a device neither underflow nor overflow.
//!
//! The engine multiplies the loss gradient by `scale`; the trainer divides it out before
//! clipping and the optimizer. A non-finite gradient means something overflowed: the step is
//! skipped (no update), the scale halves, and the skip is counted. After `growth_interval`
//! clean steps the scale doubles again, probing for headroom. Scales are powers of two, so with
//! an fp32 engine scaling and unscaling are exact and change nothing.
//!
//! The start is 1024 (2^10), not 2^16: the gradient of the mean loss with respect to a logit is
//! at most `1/n` for `n` positions, but it grows through the backward pass, and fp16 tops out
//! at 65504. 1024 lifts a 1e-7 gradient to 1e-4, above fp16's smallest normal (6.1e-5), while
//! leaving 64x headroom below the maximum for values of order 1. Starting at 2^16 would only
//! waste the first several steps on overflows before backing off to about the same place.

use serde::{Deserialize, Serialize};

/// Initial scale; see the module documentation for why 1024.
pub const INITIAL_LOSS_SCALE: f32 = 1024.0;
/// Clean steps before the scale doubles.
pub const GROWTH_INTERVAL: u64 = 200;
/// The scale never drops below 1: a scale under 1 would push small gradients into underflow.
const MIN_SCALE: f32 = 1.0;
/// Nor rises above 2^24, beyond which it buys nothing but overflow.
const MAX_SCALE: f32 = 16_777_216.0;

/// The scaler's whole state; saved in checkpoints so a resumed run scales identically.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct LossScaler {
    /// Current scale.
    pub scale: f32,
    /// Clean steps since the last change of scale.
    pub clean_steps: u64,
    /// Steps skipped so far because of non-finite gradients.
    pub skipped: u64,
    /// Clean steps before doubling.
    pub growth_interval: u64,
}

impl Default for LossScaler {
    fn default() -> Self {
        LossScaler::new(INITIAL_LOSS_SCALE, GROWTH_INTERVAL)
    }
}

impl LossScaler {
    /// A scaler starting at `scale`, doubling after `growth_interval` clean steps.
    pub fn new(scale: f32, growth_interval: u64) -> Self {
        LossScaler {
            scale,
            clean_steps: 0,
            skipped: 0,
            growth_interval: growth_interval.max(1),
        }
    }

    /// Records whether this step's gradients were finite and adjusts the scale; returns whether
    /// the optimizer may apply the step (`false` = skip it).
    pub fn update(&mut self, grads_finite: bool) -> bool {
        if !grads_finite {
            self.scale = (self.scale * 0.5).max(MIN_SCALE);
            self.clean_steps = 0;
            self.skipped += 1;
            return false;
        }
        self.clean_steps += 1;
        if self.clean_steps >= self.growth_interval {
            self.scale = (self.scale * 2.0).min(MAX_SCALE);
            self.clean_steps = 0;
        }
        true
    }
}
