//! Training: a trainer handle started from a model path or a loaded model, steps with a
//! per-step metrics callback that can stop, evaluation, checkpoints; and model export.

use crate::model::Model;
use crate::status::{
    anetrain_status, free_handle, guard, handle, optional_text, put, put_handle, text, Outcome,
};
use anetrain_data::TextOptions;
use anetrain_model::export::ExportFormat;
use anetrain_model::source::ModelSource;
use anetrain_model::train::{BaseModel, Run, RunSettings, StepMetrics};
use std::ffi::{c_char, c_int, c_void};
use std::path::Path;

/// A training run: weights, optimizer state, data position. Thread-safety: use a trainer from
/// one thread at a time; it may be moved to another thread between calls.
pub struct Trainer {
    run: Run,
}

/// What one optimizer step reports.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct StepReport {
    /// Steps completed, counting this one (1 for the first).
    pub step: u64,
    /// Mean training loss of the step.
    pub loss: f32,
    /// Learning rate the step used.
    pub lr: f32,
    /// Global gradient norm before clipping; NaN when the gradients were not finite.
    pub grad_norm: f64,
    /// Loss scale of the step's gradients.
    pub loss_scale: f32,
    /// Whether the update was skipped because the gradients overflowed.
    pub skipped: bool,
    /// Training tokens consumed so far.
    pub tokens: u64,
    /// Training tokens per second of this step.
    pub tokens_per_s: f64,
    /// Seconds of training so far.
    pub elapsed_s: f64,
    /// Validation loss when the step evaluated (`eval_every`), else NaN.
    pub val_loss: f32,
}

impl From<&StepMetrics> for StepReport {
    fn from(m: &StepMetrics) -> StepReport {
        StepReport {
            step: m.step,
            loss: m.loss,
            lr: m.lr,
            grad_norm: m.grad_norm.unwrap_or(f64::NAN),
            loss_scale: m.loss_scale,
            skipped: m.skipped,
            tokens: m.tokens,
            tokens_per_s: m.tokens_per_s,
            elapsed_s: m.elapsed_s,
            val_loss: m.val_loss.unwrap_or(f32::NAN),
        }
    }
}

/// Called after each step of `anetrain_trainer_train` with its metrics (valid during the call)
/// and the caller's pointer; return 0 to go on, anything else to stop after this step.
#[allow(non_camel_case_types)]
pub type anetrain_step_callback =
    Option<unsafe extern "C" fn(metrics: *const StepReport, user: *mut c_void) -> c_int>;

/// Starts a run from the model at `model_path` (as `anetrain_model_load` reads it; a preset
/// takes the tokenizer's vocabulary) on `data` (`synthetic[:TOKENS]`, a `.bin` shard or
/// directory of shards, or a text file; NULL is the synthetic corpus). `options_json` is NULL
/// or a JSON object of settings: steps, batch, seq, accum, lr, warmup, optimizer, weight_decay,
/// optimizer_state ("fp32" or "bf16"), clip, seed, sampling, save_every, eval_every,
/// eval_batches, keep_last, max_skipped_steps, tokenizer, val_data, val_fraction, device (the
/// `anetrain train` flags of those names), and
/// for a LoRA run on the frozen model at `model_path`: lora_rank, lora_alpha, lora_targets (a
/// comma list or an array of names), lora_layers, adapter (a PEFT or mlx-lm adapter directory
/// to continue); its checkpoints hold only the adapter.
///
/// # Safety
/// `model_path` is NUL-terminated; `data` and `options_json` are NULL or NUL-terminated;
/// `out` is writable.
#[no_mangle]
pub unsafe extern "C" fn anetrain_trainer_new(
    model_path: *const c_char,
    data: *const c_char,
    options_json: *const c_char,
    out: *mut *mut Trainer,
) -> anetrain_status {
    guard(|| {
        let source = ModelSource::parse(text(model_path, "model_path")?)?;
        start(BaseModel::Source(source), data, options_json, out)
    })
}

/// As `anetrain_trainer_new`, starting from a copy of the weights of the loaded model `m`
/// (which stays usable and unchanged).
///
/// # Safety
/// `m` is a live model; the rest as for `anetrain_trainer_new`.
#[no_mangle]
pub unsafe extern "C" fn anetrain_trainer_new_from_model(
    m: *mut Model,
    data: *const c_char,
    options_json: *const c_char,
    out: *mut *mut Trainer,
) -> anetrain_status {
    guard(|| {
        let loaded = handle(m, "m")?.loaded.clone();
        start(BaseModel::Loaded(Box::new(loaded)), data, options_json, out)
    })
}

unsafe fn start(
    model: BaseModel,
    data: *const c_char,
    options_json: *const c_char,
    out: *mut *mut Trainer,
) -> Outcome {
    let data = optional_text(data, "data")?.map(str::to_string);
    let settings = settings(options_json)?;
    let run = Run::start(settings.plan(model, data)?, &TextOptions::default())?;
    put_handle(out, Trainer { run }, "out")
}

/// The settings in `options_json` (NULL: none changed).
unsafe fn settings(options_json: *const c_char) -> Outcome<RunSettings> {
    Ok(match optional_text(options_json, "options_json")? {
        Some(json) => RunSettings::from_json(json)?,
        None => RunSettings::default(),
    })
}

/// Continues the run saved in the run directory `run_dir` (by `anetrain_trainer_save` or
/// `anetrain train`) from its latest intact checkpoint, exactly as the uninterrupted run
/// would have gone on; the directory stays locked, and gets the steps' metrics and the due
/// checkpoints, until the trainer is freed. `data` is NULL for the run's own; `options_json`
/// is NULL or the keys of `anetrain_trainer_new`, of which only steps, save_every, eval_every,
/// eval_batches, keep_last, max_skipped_steps and device may differ from the run's.
///
/// # Safety
/// `run_dir` is NUL-terminated; `data` and `options_json` are NULL or NUL-terminated; `out` is
/// writable.
#[no_mangle]
pub unsafe extern "C" fn anetrain_trainer_resume(
    run_dir: *const c_char,
    data: *const c_char,
    options_json: *const c_char,
    out: *mut *mut Trainer,
) -> anetrain_status {
    guard(|| {
        let dir = text(run_dir, "run_dir")?;
        let data = optional_text(data, "data")?.map(str::to_string);
        let plan = settings(options_json)?.resume_plan(dir, data)?;
        let run = Run::resume(plan, &TextOptions::default())?;
        put_handle(out, Trainer { run }, "out")
    })
}

/// Runs one optimizer step and stores its metrics in `*metrics` (which may be NULL). An error
/// once the run has reached its total `steps`.
///
/// # Safety
/// `t` is a live trainer; `metrics` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn anetrain_trainer_step(
    t: *mut Trainer,
    metrics: *mut StepReport,
) -> anetrain_status {
    guard(|| {
        let m = handle(t, "t")?.run.step()?;
        if !metrics.is_null() {
            put(metrics, StepReport::from(&m), "metrics")?;
        }
        Ok(())
    })
}

/// Runs up to `steps` optimizer steps, calling `callback` (which may be NULL) after each;
/// stops early when the callback returns non-zero or the run reaches its total `steps`.
/// Stores the number of steps taken in `*taken` (which may be NULL). After a failure the
/// trainer holds the last completed step.
///
/// # Safety
/// `t` is a live trainer; `taken` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn anetrain_trainer_train(
    t: *mut Trainer,
    steps: u64,
    callback: anetrain_step_callback,
    user: *mut c_void,
    taken: *mut u64,
) -> anetrain_status {
    guard(|| {
        let run = &mut handle(t, "t")?.run;
        let done = run.train(steps, |m| match callback {
            Some(f) => f(&StepReport::from(m), user) == 0,
            None => true,
        })?;
        if !taken.is_null() {
            put(taken, done.len() as u64, "taken")?;
        }
        Ok(())
    })
}

/// Stores in `*loss` the mean loss of the current weights on the validation data (at most
/// `eval_batches` batches); an error when the run has none.
///
/// # Safety
/// `t` is a live trainer; `loss` is writable.
#[no_mangle]
pub unsafe extern "C" fn anetrain_trainer_evaluate(
    t: *mut Trainer,
    loss: *mut f32,
) -> anetrain_status {
    guard(|| {
        let result = handle(t, "t")?.run.evaluate()?;
        put(loss, result.loss, "loss")
    })
}

/// Saves a checkpoint of the current step into the run directory `dir` (created when missing,
/// with the run's tokenizer copied in), so `anetrain_model_load(dir)`,
/// `anetrain_trainer_resume(dir)` and `anetrain train --resume --out dir` read it. The first
/// directory saved into becomes the run's own: locked until the trainer is freed, it gets
/// `run.json` and `metrics.jsonl` (every step, earlier ones included, which `anetrain plot`
/// reads) and a checkpoint whenever one is due (`save_every`, and the last step). A directory
/// holding another run's checkpoints is refused.
///
/// # Safety
/// `t` is a live trainer; `dir` is NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn anetrain_trainer_save(
    t: *mut Trainer,
    dir: *const c_char,
) -> anetrain_status {
    guard(|| {
        let dir = Path::new(text(dir, "dir")?);
        handle(t, "t")?.run.save(dir)?;
        Ok(())
    })
}

/// Releases a trainer (NULL is ignored); unsaved steps are lost.
///
/// # Safety
/// `t` is NULL or a trainer not yet freed.
#[no_mangle]
pub unsafe extern "C" fn anetrain_trainer_free(t: *mut Trainer) {
    let _ = guard(|| {
        free_handle(t);
        Ok(())
    });
}

/// Writes the model in `format` to `out`: `hf` (a directory transformers loads, with the
/// tokenizer) or `llama2c` (one `.bin` file). An `out` that already holds a model is refused.
///
/// # Safety
/// `m` is a live model; `format` and `out` are NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn anetrain_model_export(
    m: *mut Model,
    format: *const c_char,
    out: *const c_char,
) -> anetrain_status {
    guard(|| {
        let model = &handle(m, "m")?.loaded;
        let format: ExportFormat = text(format, "format")?.parse()?;
        model.export(format, Path::new(text(out, "out")?))?;
        Ok(())
    })
}
