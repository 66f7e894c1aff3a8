//! Learning-rate schedule: linear warmup, then cosine decay to a floor of 10% of the peak
//! (ane-reference §6.9). It is a pure function of the step index, so a resumed run needs only
//! the step to continue the schedule exactly.

use serde::{Deserialize, Serialize};

/// The floor of the cosine decay as a fraction of the peak.
pub const MIN_LR_RATIO: f32 = 0.1;

/// Warmup-then-cosine schedule over a run of `total_steps` optimizer steps.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Schedule {
    /// Peak learning rate, reached at the end of warmup.
    pub peak_lr: f32,
    /// Steps of linear warmup.
    pub warmup: u64,
    /// Total optimizer steps of the run; the decay reaches its floor here.
    pub total_steps: u64,
}

impl Schedule {
    /// The learning rate of step `step` (0-based):
    /// - `step < warmup`: `peak·(step + 1)/warmup`, so the first step already moves;
    /// - after: `min + (peak − min)·½(1 + cos(π·p))` with `p = (step − warmup)/(total − warmup)`
    ///   clamped to `[0, 1]`, so steps past `total_steps` stay at the floor.
    pub fn lr(&self, step: u64) -> f32 {
        if step < self.warmup {
            return self.peak_lr * (step + 1) as f32 / self.warmup as f32;
        }
        let min = self.peak_lr * MIN_LR_RATIO;
        let span = self.total_steps.saturating_sub(self.warmup);
        let progress = if span == 0 {
            1.0
        } else {
            ((step - self.warmup) as f64 / span as f64).min(1.0)
        };
        let cosine = 0.5 * (1.0 + libm::cos(std::f64::consts::PI * progress));
        min + (self.peak_lr - min) * cosine as f32
    }
}
