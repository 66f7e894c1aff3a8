//! The settings of a training run: everything that, together with the seed, determines what the
//! run computes. They are saved in every checkpoint so a resumed run continues with the same.

use anetrain_data::Sampling;
use serde::{Deserialize, Serialize};

use super::optimizer::{OptimizerSpec, StatePrecision};
use super::schedule::Schedule;
use crate::config::ModelConfig;
use crate::error::{ModelError, Result};

/// Hyperparameters and bookkeeping intervals of one run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainOptions {
    /// Total optimizer steps of the run (a resumed run stops at the same total).
    pub steps: u64,
    /// Sequences per micro-batch.
    pub batch: usize,
    /// Tokens of input per sequence.
    pub seq: usize,
    /// Micro-batches whose gradients are summed into one optimizer step.
    pub accum: usize,
    /// Peak learning rate.
    pub lr: f32,
    /// Linear warmup steps.
    pub warmup: u64,
    /// Optimizer and its hyperparameters.
    pub optimizer: OptimizerSpec,
    /// Global gradient-norm limit; 0 disables clipping.
    pub clip: f32,
    /// Seeds initialisation and data order.
    pub seed: u64,
    /// Order of training samples.
    pub sampling: Sampling,
    /// Evaluate on the validation data every this many steps (and at the end); 0 = never.
    pub eval_every: u64,
    /// Cap on validation batches per evaluation during training (0 = the whole split), so
    /// evaluation stays a small fraction of the run.
    pub eval_batches: usize,
    /// Save a checkpoint every this many steps (and at the end); 0 = only at the end.
    pub save_every: u64,
    /// Checkpoints kept besides the best-validation one.
    pub keep_last: usize,
    /// Consecutive skipped (overflowed) steps after which the run stops as diverged; 0 never.
    #[serde(default = "default_max_skipped_steps")]
    pub max_skipped_steps: u64,
}

/// Enough for the loss scale to fall from its start to 1 and then ten more tries: a run still
/// overflowing then has diverged, and more steps would only burn time.
pub const DEFAULT_MAX_SKIPPED_STEPS: u64 = 20;

fn default_max_skipped_steps() -> u64 {
    DEFAULT_MAX_SKIPPED_STEPS
}

impl Default for TrainOptions {
    /// The defaults of ane-reference §6.9 where they suit small runs (AdamW, peak 3e-4, clip 1,
    /// decay 0.1), with warmup shortened to 10 steps and no accumulation.
    fn default() -> Self {
        TrainOptions {
            steps: 1000,
            batch: 8,
            seq: 64,
            accum: 1,
            lr: 3e-4,
            warmup: 10,
            optimizer: OptimizerSpec::adamw(0.1),
            clip: 1.0,
            seed: 42,
            sampling: Sampling::Shuffle { seed: 42 },
            eval_every: 0,
            eval_batches: 8,
            save_every: 0,
            keep_last: 3,
            max_skipped_steps: DEFAULT_MAX_SKIPPED_STEPS,
        }
    }
}

impl TrainOptions {
    /// The learning-rate schedule these options describe.
    pub fn schedule(&self) -> Schedule {
        Schedule {
            peak_lr: self.lr,
            warmup: self.warmup,
            total_steps: self.steps,
        }
    }

    /// Training tokens consumed by one optimizer step.
    pub fn tokens_per_step(&self) -> u64 {
        (self.batch * self.seq * self.accum) as u64
    }

    /// Checks the options against each other and the model; each message names the flag.
    pub fn validate(&self, config: &ModelConfig) -> Result<()> {
        let bad = |m: String| Err(ModelError::Options(m));
        if self.batch == 0 || self.seq == 0 || self.accum == 0 {
            return bad("--batch, --seq and --accum must all be at least 1".into());
        }
        if self.seq > config.max_seq_len {
            return bad(format!(
                "--seq {} is longer than the model's max_seq_len {}; pass --seq {} or less",
                self.seq, config.max_seq_len, config.max_seq_len
            ));
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return bad(format!(
                "--lr {} must be a positive number, e.g. 3e-4",
                self.lr
            ));
        }
        if !(self.clip.is_finite() && self.clip >= 0.0) {
            return bad(format!(
                "--clip {} must be a non-negative number (0 disables clipping)",
                self.clip
            ));
        }
        let decay = match self.optimizer {
            OptimizerSpec::Adamw { weight_decay, .. } | OptimizerSpec::Sgd { weight_decay, .. } => {
                weight_decay
            }
        };
        if !(decay.is_finite() && decay >= 0.0) {
            return bad(format!(
                "--weight-decay {decay} must be a non-negative number, e.g. 0.1"
            ));
        }
        self.optimizer.check_state_precision()
    }

    /// What differs between these options and those a checkpoint was trained with, ignoring
    /// the settings a resumed run may change (total steps, the eval/save intervals and the
    /// divergence limit): a
    /// change to any other would make the resumed run differ from an uninterrupted one.
    pub fn resume_conflicts(&self, saved: &TrainOptions) -> Vec<String> {
        let mut out = Vec::new();
        let mut check = |flag: &str, now: String, then: String| {
            if now != then {
                out.push(format!("{flag} is {now} but the checkpoint used {then}"));
            }
        };
        check("--batch", self.batch.to_string(), saved.batch.to_string());
        check("--seq", self.seq.to_string(), saved.seq.to_string());
        check("--accum", self.accum.to_string(), saved.accum.to_string());
        check("--lr", self.lr.to_string(), saved.lr.to_string());
        check(
            "--warmup",
            self.warmup.to_string(),
            saved.warmup.to_string(),
        );
        let (now, then) = (self.optimizer, saved.optimizer);
        check(
            "--optimizer-state",
            now.state_precision().name().into(),
            then.state_precision().name().into(),
        );
        // The state precision is named above, on its own.
        let fp32 = StatePrecision::Fp32;
        check(
            "--optimizer/--weight-decay",
            format!("{:?}", now.with_state(fp32)),
            format!("{:?}", then.with_state(fp32)),
        );
        check("--clip", self.clip.to_string(), saved.clip.to_string());
        check("--seed", self.seed.to_string(), saved.seed.to_string());
        check(
            "--sampling",
            format!("{:?}", self.sampling),
            format!("{:?}", saved.sampling),
        );
        out
    }
}
