//! The training loop: for each optimizer step, accumulate the gradients of `accum`
//! micro-batches, unscale, check they are finite, clip, update the fp32 master weights, stage
//! them on the engine, record metrics, evaluate and save when due.
//!
//! The engine is a constructor argument, so the same loop drives the plain-Rust reference or
//! MIL kernels on any device.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anetrain_data::{Batch, BatchSampler, EvalSource, TrainData};
use rayon::prelude::*;

use super::base_ref::BaseRef;
use super::checkpoint::{
    apply_retention, save_adapter_checkpoint, save_checkpoint, Checkpoint, CheckpointMeta,
    DataProvenance, TrainState,
};
use super::clip::{clip_factor, global_norm};
use super::eval::{evaluate, EvalResult};
use super::loss_scale::LossScaler;
use super::metrics::StepMetrics;
use super::optimizer::Optimizer;
use super::options::TrainOptions;
use crate::config::ModelConfig;
use crate::engine::Engine;
use crate::error::{ModelError, Result};
use crate::lora::Adapter;
use crate::params::{ParamSet, Params};

/// What a run trains, with its gradient accumulator (allocated once, zeroed each step) and
/// optimizer.
enum Trained {
    /// Every weight: fp32 gradients and optimizer state for each (16 bytes per parameter with
    /// AdamW, weights included; 12 with its moments in bf16).
    Full { grads: Params, optimizer: Optimizer },
    /// An adapter on a frozen base: gradients and optimizer state for `A` and `B` only. The
    /// base is held once: in fp32 on the host where the CPU device's kernels read it in place;
    /// where the engine stages its own copy (the ANE's fp16 surfaces), the host keeps only the
    /// embedding, norms and classifier it computes with, and the block matrices' shapes.
    Adapter {
        adapter: Adapter,
        grads: Adapter,
        optimizer: Optimizer<Adapter>,
        base: BaseRef,
    },
}

/// A training run in progress: weights, optimizer, data position and bookkeeping.
pub struct Trainer {
    config: ModelConfig,
    options: TrainOptions,
    engine: Box<dyn Engine>,
    /// The model's weights (a LoRA run's frozen base).
    params: Params,
    trained: Trained,
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
        let trained = Trained::Full {
            grads: Params::zeros(config),
            optimizer: Optimizer::new(options.optimizer, &params),
        };
        Self::build(config, params, trained, options, data.into(), engine)
    }

    /// A LoRA run from step 0: trains `adapter` (fresh, or one to continue) on the frozen
    /// `base` that `base_ref` names; checkpoints hold only the adapter.
    pub fn new_adapter(
        config: &ModelConfig,
        base: Params,
        base_ref: BaseRef,
        adapter: Adapter,
        options: TrainOptions,
        data: impl Into<TrainData>,
        engine: Box<dyn Engine>,
    ) -> Result<Self> {
        let trained = Trained::Adapter {
            grads: adapter.zeros_like(),
            optimizer: Optimizer::new(options.optimizer, &adapter),
            adapter,
            base: base_ref,
        };
        Self::build(config, base, trained, options, data.into(), engine)
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
        let trained = match (&checkpoint.adapter, &checkpoint.meta.lora_base) {
            (Some(adapter), Some(base)) => Trained::Adapter {
                grads: adapter.zeros_like(),
                optimizer: checkpoint.load_optimizer_for(adapter)?,
                adapter: adapter.clone(),
                base: base.clone(),
            },
            _ => Trained::Full {
                grads: Params::zeros(&checkpoint.config),
                optimizer: checkpoint.load_optimizer()?,
            },
        };
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
            trained,
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
        mut params: Params,
        trained: Trained,
        options: TrainOptions,
        data: TrainData,
        mut engine: Box<dyn Engine>,
    ) -> Result<Self> {
        config.validate()?;
        options.validate(config)?;
        params.check_matches(config)?;
        if let Trained::Full { .. } = trained {
            // fp32 weights and gradients and the optimizer's state in its precision (the
            // weights exist already).
            crate::params::ensure_param_memory(
                config,
                8 + options.optimizer.state_bytes_per_param(),
                "training (weights, gradients, optimizer state)",
            )?;
        }
        data.validate_vocab(config.vocab_size)?;
        // Found now rather than at the first evaluation, many steps into the run.
        let val = data.validation(options.seq, options.batch).map_err(|e| {
            ModelError::Options(format!("the validation data (--val-data) is unusable: {e}"))
        })?;
        let sampler = data.sampler(options.seq, options.batch, options.sampling)?;
        engine.stage(&params)?;
        if let Trained::Adapter { adapter, .. } = &trained {
            engine.set_adapter(Some(adapter))?;
            // The base is never restaged (staging shape-only matrices is an error).
            if engine.holds_own_copy() {
                params.drop_block_matrices();
            }
        }
        Ok(Trainer {
            config: config.clone(),
            batches: vec![Batch::new(options.batch, options.seq); options.accum],
            options,
            engine,
            params,
            trained,
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
        match &mut self.trained {
            Trained::Full { grads, .. } => zero(grads),
            Trained::Adapter { grads, .. } => zero(grads),
        }
        for batch in &mut self.batches {
            self.sampler.next_batch(batch)?;
        }
        // The step's loss is the mean over every counted target of its micro-batches (as
        // transformers and mlx-lm accumulate), so micro-batch k's mean weighs n_k / Σ n.
        let counted: usize = self.batches.iter().map(Batch::counted_targets).sum();
        let mut loss_sum = 0.0f64;
        for batch in &self.batches {
            let share = scale * batch.counted_targets() as f32 / counted.max(1) as f32;
            let (params, engine) = (&self.params, &mut self.engine);
            let stats = match &mut self.trained {
                Trained::Full { grads, .. } => {
                    engine.forward_backward(params, batch, share, grads)?
                }
                Trained::Adapter { grads, .. } => {
                    engine.adapter_backward(params, batch, share, grads)?
                }
            };
            loss_sum += stats.loss as f64 * stats.tokens as f64;
        }
        let loss = (loss_sum / counted.max(1) as f64) as f32;
        let lr = self.options.schedule().lr(self.step);
        let (options, scaler) = (&self.options, &mut self.scaler);
        let (norm, apply) = match &mut self.trained {
            Trained::Full { grads, optimizer } => {
                let (norm, apply) = update(options, scaler, optimizer, &mut self.params, grads, lr);
                if apply {
                    self.engine.stage(&self.params)?;
                }
                (norm, apply)
            }
            Trained::Adapter {
                adapter,
                grads,
                optimizer,
                ..
            } => {
                let (norm, apply) = update(options, scaler, optimizer, adapter, grads, lr);
                if apply {
                    self.engine.set_adapter(Some(adapter))?;
                }
                (norm, apply)
            }
        };
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
                optimizer_updates: match &self.trained {
                    Trained::Full { optimizer, .. } => optimizer.updates(),
                    Trained::Adapter { optimizer, .. } => optimizer.updates(),
                },
                tokens_seen: self.tokens_seen,
                elapsed_secs: self.elapsed_secs,
                // Only a loss measured on these very weights marks this checkpoint.
                val_loss: self.last_val_loss.filter(|_| self.evaluated_now()),
                best_val_loss: self.best_val_loss,
            }),
            provenance: self.provenance.clone(),
            lora_base: None,
        };
        let dir = match &self.trained {
            Trained::Full { optimizer, .. } => {
                save_checkpoint(run_dir, &self.params, Some(optimizer), &meta)?
            }
            Trained::Adapter {
                adapter,
                optimizer,
                base,
                ..
            } => {
                let meta = CheckpointMeta {
                    lora_base: Some(base.clone()),
                    ..meta
                };
                save_adapter_checkpoint(run_dir, adapter, optimizer, &meta)?
            }
        };
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

    /// The current fp32 master weights; a LoRA run's frozen base, whose block matrices are
    /// shapes only when the engine holds its own copy ([`Params::holds_block_matrices`]; see
    /// [`Trainer::trained_model`] for the whole model).
    pub fn params(&self) -> &Params {
        &self.params
    }

    /// How many parameters the optimizer updates: the adapter's in a LoRA run, else all.
    pub fn trainable_params(&self) -> usize {
        match &self.trained {
            Trained::Full { .. } => self.params.num_params(),
            Trained::Adapter { adapter, .. } => adapter.num_params(),
        }
    }

    /// The model as trained so far, as one plain set of weights: a LoRA run's base with the
    /// adapter fused in (a copy of the base, reloaded from its path and checked by hash when
    /// only the engine holds its matrices), a full run's weights (a copy).
    pub fn trained_model(&self) -> Result<Params> {
        match &self.trained {
            Trained::Full { .. } => Ok(self.params.clone()),
            Trained::Adapter { adapter, base, .. } => {
                let mut params = if self.params.holds_block_matrices() {
                    self.params.clone()
                } else {
                    base.load(&self.config, Path::new("this LoRA run"))?
                };
                adapter.fuse_into(&mut params)?;
                Ok(params)
            }
        }
    }

    /// The optimizer and its state of a full run; `None` for a LoRA run (see
    /// [`Trainer::adapter`]).
    pub fn optimizer(&self) -> Option<&Optimizer> {
        match &self.trained {
            Trained::Full { optimizer, .. } => Some(optimizer),
            Trained::Adapter { .. } => None,
        }
    }

    /// A LoRA run's adapter as trained so far, with its optimizer.
    pub fn adapter(&self) -> Option<(&Adapter, &Optimizer<Adapter>)> {
        match &self.trained {
            Trained::Full { .. } => None,
            Trained::Adapter {
                adapter, optimizer, ..
            } => Some((adapter, optimizer)),
        }
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

/// Sets every gradient to zero for the next step.
fn zero(grads: &mut impl ParamSet) {
    grads.tensors_mut().into_par_iter().for_each(|(_, mut t)| {
        t.data_mut()
            .par_chunks_mut(1 << 16)
            .for_each(|c| c.fill(0.0))
    });
}

/// The end of a step over whatever `weights` are trained: the engines added the gradient of
/// the step's mean loss times the loss scale, so unscale, check the norm is finite (else the
/// scaler skips the step), clip, and apply the optimizer. Returns the norm
/// before clipping and whether the update was applied.
fn update<P: ParamSet>(
    options: &TrainOptions,
    scaler: &mut LossScaler,
    optimizer: &mut Optimizer<P>,
    weights: &mut P,
    grads: &mut P,
    lr: f32,
) -> (f64, bool) {
    // The scale is a power of two, so unscaling the norm instead of the gradients, and folding
    // unscale and clip into the optimizer's one read of them, changes no bit of the update.
    let unscale = 1.0 / scaler.scale;
    let norm = global_norm(grads) * unscale as f64;
    let apply = scaler.update(norm.is_finite());
    if apply {
        let clip = if options.clip > 0.0 {
            clip_factor(norm, options.clip)
        } else {
            1.0
        };
        optimizer.step(weights, grads, lr, unscale * clip);
    }
    (norm, apply)
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
