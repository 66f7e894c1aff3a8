//! The training loop: for each optimizer step, accumulate the gradients of `accum`
//! micro-batches, unscale, check they are finite, clip, update the fp32 master weights, stage
//! them on the engine, record metrics, evaluate and save when due.
//!
//! The engine is a constructor argument, so the same loop drives the plain-Rust reference or
//! MIL kernels on any device.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anetrain_data::{Batch, BatchSampler, EvalSource, TrainData};

use super::checkpoint::{
    apply_retention, save_checkpoint, Checkpoint, CheckpointMeta, DataProvenance, TrainState,
};
use super::clip::{global_norm, scale_grads};
use super::eval::{evaluate, EvalResult};
use super::loss_scale::LossScaler;
use super::metrics::StepMetrics;
use super::optimizer::Optimizer;
use super::options::TrainOptions;
use crate::config::ModelConfig;
use crate::engine::Engine;
use crate::error::{ModelError, Result};
use crate::params::Params;

/// A training run in progress: weights, optimizer, data position and bookkeeping.
pub struct Trainer {
    config: ModelConfig,
    options: TrainOptions,
    engine: Box<dyn Engine>,
    params: Params,
    /// Gradient accumulator, allocated once and zeroed each step.
    grads: Params,
    optimizer: Optimizer,
    scaler: LossScaler,
    sampler: Box<dyn BatchSampler>,
    val: Option<Box<dyn EvalSource>>,
    /// One buffer per accumulation micro-batch, allocated once: a step draws them all first,
    /// so each is weighted by its share of the step's counted targets.
    batches: Vec<Batch>,
    step: u64,
    tokens_seen: u64,
    elapsed_secs: f64,
    last_val_loss: Option<f32>,
    best_val_loss: Option<f32>,
    /// `--data`/`--tokenizer` spellings recorded in checkpoints.
    provenance: DataProvenance,
    /// Steps skipped in a row, for the divergence stop.
    skipped_in_a_row: u64,
}

impl Trainer {
    /// A run from step 0 with weights `params` (fresh or imported), on token streams (a
    /// [`anetrain_data::Split`]) or fine-tuning examples (an [`anetrain_data::ExampleSplit`]).
    /// Every token of the data is checked against the vocabulary first, so bad data fails now,
    /// naming the position.
    pub fn new(
        config: &ModelConfig,
        params: Params,
        options: TrainOptions,
        data: impl Into<TrainData>,
        engine: Box<dyn Engine>,
    ) -> Result<Self> {
        let optimizer = Optimizer::new(options.optimizer, &params);
        Self::build(config, params, optimizer, options, data.into(), engine)
    }

    /// Continues the run saved in `checkpoint` with `options` (which may change only the total
    /// steps and the eval/save intervals; see [`TrainOptions::resume_conflicts`]). The data must
    /// be what the run was trained on; the sampler continues at the saved position.
    pub fn resume(
        checkpoint: &Checkpoint,
        options: TrainOptions,
        data: impl Into<TrainData>,
        engine: Box<dyn Engine>,
    ) -> Result<Self> {
        let optimizer = checkpoint.load_optimizer()?;
        let Some(state) = &checkpoint.meta.train else {
            return Err(ModelError::Options(
                "the checkpoint has no training state; use --init-from".into(),
            ));
        };
        let conflicts = options.resume_conflicts(&state.options);
        if !conflicts.is_empty() {
            return Err(ModelError::Options(format!(
                "cannot resume with different settings: {}; drop these flags to continue the run as it was",
                conflicts.join("; ")
            )));
        }
        let mut trainer = Self::build(
            &checkpoint.config,
            checkpoint.params.clone(),
            optimizer,
            options,
            data.into(),
            engine,
        )?;
        if trainer.sampler.num_samples() != state.train_samples {
            return Err(ModelError::Options(format!(
                "the training data has {} samples of --seq {} but the checkpoint's had {}; resume with the original --data, --val-data/--val-fraction and --seq",
                trainer.sampler.num_samples(),
                trainer.options.seq,
                state.train_samples
            )));
        }
        trainer.sampler.restore(state.sampler)?;
        trainer.scaler = state.loss_scaler;
        trainer.step = checkpoint.meta.step;
        trainer.tokens_seen = state.tokens_seen;
        trainer.elapsed_secs = state.elapsed_secs;
        trainer.last_val_loss = state.val_loss;
        trainer.best_val_loss = state.best_val_loss;
        trainer.provenance = checkpoint.meta.provenance.clone();
        Ok(trainer)
    }

    fn build(
        config: &ModelConfig,
        params: Params,
        optimizer: Optimizer,
        options: TrainOptions,
        data: TrainData,
        mut engine: Box<dyn Engine>,
    ) -> Result<Self> {
        config.validate()?;
        options.validate(config)?;
        params.check_matches(config)?;
        // Weights, gradients and the optimizer's moments, all fp32 (the weights exist already).
        crate::params::ensure_param_memory(
            config,
            4,
            "training (weights, gradients, optimizer state)",
        )?;
        data.validate_vocab(config.vocab_size)?;
        // Found now rather than at the first evaluation, many steps into the run.
        let val = data.validation(options.seq, options.batch).map_err(|e| {
            ModelError::Options(format!("the validation data (--val-data) is unusable: {e}"))
        })?;
        let sampler = data.sampler(options.seq, options.batch, options.sampling)?;
        engine.stage(&params)?;
        let grads = Params::zeros(config);
        Ok(Trainer {
            config: config.clone(),
            batches: vec![Batch::new(options.batch, options.seq); options.accum],
            options,
            engine,
            params,
            grads,
            optimizer,
            scaler: LossScaler::default(),
            sampler,
            val,
            step: 0,
            tokens_seen: 0,
            elapsed_secs: 0.0,
            last_val_loss: None,
            best_val_loss: None,
            provenance: DataProvenance::default(),
            skipped_in_a_row: 0,
        })
    }

    /// Records the `--data` and `--tokenizer` spellings in the checkpoints this run writes.
    pub fn set_provenance(&mut self, provenance: DataProvenance) {
        self.provenance = provenance;
    }

    /// Replaces the loss scaler (e.g. to start at another scale, or in tests).
    pub fn set_loss_scaler(&mut self, scaler: LossScaler) {
        self.scaler = scaler;
    }

    /// Runs one optimizer step (and an evaluation when one is due) and returns its metrics;
    /// [`ModelError::Diverged`] once `max_skipped_steps` steps in a row have overflowed.
    pub fn step(&mut self) -> Result<StepMetrics> {
        let metrics = self.step_once()?;
        self.skipped_in_a_row = if metrics.skipped {
            self.skipped_in_a_row + 1
        } else {
            0
        };
        let limit = self.options.max_skipped_steps;
        if limit > 0 && self.skipped_in_a_row >= limit {
            return Err(ModelError::Diverged {
                steps: self.skipped_in_a_row,
                step: metrics.step,
                loss: metrics.loss,
                lr: metrics.lr,
            });
        }
        Ok(metrics)
    }

    fn step_once(&mut self) -> Result<StepMetrics> {
        let started = Instant::now();
        let scale = self.scaler.scale;
        self.grads
            .iter_mut()
            .into_iter()
            .for_each(|(_, t)| t.data_mut().fill(0.0));
        for batch in &mut self.batches {
            self.sampler.next_batch(batch)?;
        }
        // The step's loss is the mean over every counted target of its micro-batches (as
        // transformers and mlx-lm accumulate), so micro-batch k's mean weighs n_k / Σ n.
        let counted: usize = self.batches.iter().map(Batch::counted_targets).sum();
        let mut loss_sum = 0.0f64;
        for batch in &self.batches {
            let share = batch.counted_targets() as f32 / counted.max(1) as f32;
            let stats = self.engine.forward_backward(
                &self.params,
                batch,
                scale * share,
                &mut self.grads,
            )?;
            loss_sum += stats.loss as f64 * stats.tokens as f64;
        }
        let loss = (loss_sum / counted.max(1) as f64) as f32;
        scale_grads(&mut self.grads, 1.0 / scale);
        let norm = global_norm(&self.grads);
        let lr = self.options.schedule().lr(self.step);
        let apply = self.scaler.update(norm.is_finite());
        if apply {
            if self.options.clip > 0.0 && norm > self.options.clip as f64 {
                scale_grads(&mut self.grads, (self.options.clip as f64 / norm) as f32);
            }
            self.optimizer.step(&mut self.params, &self.grads, lr);
            self.engine.stage(&self.params)?;
        }
        self.step += 1;
        self.tokens_seen += counted as u64;
        let secs = started.elapsed().as_secs_f64();
        self.elapsed_secs += secs;
        let mut metrics = StepMetrics {
            step: self.step,
            loss,
            lr,
            grad_norm: norm.is_finite().then_some(norm),
            loss_scale: scale,
            skipped: !apply,
            skipped_total: self.scaler.skipped,
            tokens: self.tokens_seen,
            tokens_per_s: counted as f64 / secs.max(1e-9),
            elapsed_s: self.elapsed_secs,
            val_loss: None,
            perplexity: None,
        };
        if self.evaluated_now() {
            if let Some(result) = self.evaluate()? {
                metrics.val_loss = Some(result.loss);
                metrics.perplexity = Some(result.perplexity);
            }
        }
        Ok(metrics)
    }

    /// Evaluates on the validation data (at most `eval_batches` batches); `None` without any.
    /// Updates the best validation loss that checkpoint retention keeps.
    pub fn evaluate(&mut self) -> Result<Option<EvalResult>> {
        let Some(val) = self.val.as_mut() else {
            return Ok(None);
        };
        let result = evaluate(
            self.engine.as_mut(),
            &self.params,
            val.as_mut(),
            self.options.eval_batches,
        )?;
        self.last_val_loss = Some(result.loss);
        if self.best_val_loss.is_none_or(|best| result.loss < best) {
            self.best_val_loss = Some(result.loss);
        }
        Ok(Some(result))
    }

    /// Whether the run has reached its total step count.
    pub fn is_done(&self) -> bool {
        self.step >= self.options.steps
    }

    /// Whether a checkpoint is due after the current step (every `save_every`, and at the end).
    pub fn save_due(&self) -> bool {
        self.is_done() || every_n(self.step, self.options.save_every)
    }

    /// Writes a checkpoint of the current step into `run_dir` atomically, then deletes old ones
    /// beyond `keep_last` (keeping the best validation loss). Returns the checkpoint directory.
    pub fn save(&self, run_dir: &Path) -> Result<PathBuf> {
        let meta = CheckpointMeta {
            format_version: super::checkpoint::FORMAT_VERSION,
            step: self.step,
            config: config_value(&self.config)?,
            train: Some(TrainState {
                options: self.options.clone(),
                sampler: self.sampler.state(),
                train_samples: self.sampler.num_samples(),
                loss_scaler: self.scaler,
                optimizer_updates: self.optimizer.updates(),
                tokens_seen: self.tokens_seen,
                elapsed_secs: self.elapsed_secs,
                // Only a loss measured on these very weights marks this checkpoint.
                val_loss: self.last_val_loss.filter(|_| self.evaluated_now()),
                best_val_loss: self.best_val_loss,
            }),
            provenance: self.provenance.clone(),
        };
        let dir = save_checkpoint(run_dir, &self.params, Some(&self.optimizer), &meta)?;
        apply_retention(run_dir, self.options.keep_last)?;
        Ok(dir)
    }

    /// Whether an evaluation is due at the current step (every `eval_every`, and at the end
    /// when evaluation is on); after [`Trainer::step`], whether it happened.
    fn evaluated_now(&self) -> bool {
        self.options.eval_every > 0
            && (self.is_done() || every_n(self.step, self.options.eval_every))
    }

    /// Steps completed.
    pub fn current_step(&self) -> u64 {
        self.step
    }

    /// The run's settings.
    pub fn options(&self) -> &TrainOptions {
        &self.options
    }

    /// The model configuration.
    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    /// The current fp32 master weights.
    pub fn params(&self) -> &Params {
        &self.params
    }

    /// The optimizer and its state.
    pub fn optimizer(&self) -> &Optimizer {
        &self.optimizer
    }

    /// The loss scaler's state.
    pub fn loss_scaler(&self) -> LossScaler {
        self.scaler
    }

    /// What the engine is, for the user.
    pub fn engine_description(&self) -> String {
        self.engine.describe()
    }
}

/// Whether `step` is a positive multiple of `n`; never for `n = 0` (the interval is off).
fn every_n(step: u64, n: u64) -> bool {
    step > 0 && step.checked_rem(n) == Some(0)
}

/// A config as the `config.json` object stored in checkpoint metadata.
pub fn config_value(config: &ModelConfig) -> Result<serde_json::Value> {
    serde_json::from_str(&config.to_hf_json())
        .map_err(|e| ModelError::Config(format!("cannot encode the config: {e}")))
}
