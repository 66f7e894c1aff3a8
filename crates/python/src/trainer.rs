//! `anetrain.Trainer`: a training run started from a model (or a path) and data, stepped with
//! metrics dicts, interrupted by Ctrl-C between steps, evaluated and saved.

use crate::error::to_py;
use crate::model::Model;
use anetrain_data::TextOptions;
use anetrain_model::source::ModelSource;
use anetrain_model::train::{BaseModel, Run, RunSettings, StepMetrics};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyDict;
use std::path::PathBuf;
use std::sync::Mutex;

/// A training run: weights, optimizer state and data position.
#[pyclass(module = "anetrain")]
pub struct Trainer {
    run: Mutex<Run>,
    out: Option<PathBuf>,
}

/// `value` (anything serde serialises) as the Python object `json.loads` makes of it.
fn to_python<'py>(py: Python<'py>, value: &impl serde::Serialize) -> PyResult<Bound<'py, PyAny>> {
    let text = serde_json::to_string(value).map_err(to_py)?;
    py.import("json")?.call_method1("loads", (text,))
}

/// The keyword settings as the library reads them (a bad key or value is a ValueError).
fn settings(py: Python<'_>, options: Option<&Bound<'_, PyDict>>) -> PyResult<RunSettings> {
    let json = match options {
        Some(options) => py
            .import("json")?
            .call_method1("dumps", (options,))?
            .extract::<String>()?,
        None => "{}".into(),
    };
    RunSettings::from_json(&json).map_err(|e| PyValueError::new_err(e.to_string()))
}

impl Trainer {
    fn run(&self) -> PyResult<std::sync::MutexGuard<'_, Run>> {
        self.run
            .lock()
            .map_err(|_| to_py("the trainer is unusable after a failure in another thread"))
    }
}

#[pymethods]
impl Trainer {
    /// Starts a run of `model` (a `Model`, copied, or a path or preset name) on `data`
    /// (`synthetic[:TOKENS]`, a .bin shard or directory of shards, or a text file; default the
    /// synthetic corpus). `out` is the run directory: locked while the trainer lives, it gets
    /// run.json, metrics.jsonl (every step) and the due checkpoints, and is the default
    /// directory of `save()`. The keywords are the
    /// `anetrain train` settings: steps, batch, seq, accum, lr, warmup, optimizer,
    /// weight_decay, optimizer_state ("fp32" or "bf16"), clip, seed, sampling, save_every, eval_every, eval_batches, keep_last,
    /// max_skipped_steps, tokenizer, val_data, val_fraction, device; and for a LoRA run on the
    /// frozen model at the path `model`: lora_rank, lora_alpha, lora_targets (a comma list or
    /// a list of names), lora_layers, adapter (a PEFT or mlx-lm directory to continue).
    #[new]
    #[pyo3(signature = (model, data=None, out=None, **options))]
    fn new(
        py: Python<'_>,
        model: &Bound<'_, PyAny>,
        data: Option<String>,
        out: Option<PathBuf>,
        options: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Trainer> {
        let base = match model.cast::<Model>() {
            Ok(m) => BaseModel::Loaded(Box::new(m.borrow().model()?.clone())),
            Err(_) => {
                let path: PathBuf = model.extract().map_err(|_| {
                    PyValueError::new_err(
                        "model must be an anetrain.Model, a path or a preset name",
                    )
                })?;
                BaseModel::Source(ModelSource::parse(&path.to_string_lossy()).map_err(to_py)?)
            }
        };
        let plan = settings(py, options)?
            .plan(base, data)
            .map_err(|e| PyValueError::new_err(e.to_string()))?;
        let run = py
            .detach(|| match &out {
                Some(dir) => Run::start_in(dir, plan, &TextOptions::default()),
                None => Run::start(plan, &TextOptions::default()),
            })
            .map_err(to_py)?;
        Ok(Trainer {
            run: Mutex::new(run),
            out,
        })
    }

    /// Continues the run in the run directory `dir` (saved by `save()`, the C trainer or
    /// `anetrain train`) from its latest intact checkpoint, exactly as the uninterrupted run
    /// would have gone on; `dir` becomes its `out`. `data` defaults to the run's own; of the
    /// keywords only steps, save_every, eval_every, eval_batches, keep_last,
    /// max_skipped_steps and device may differ from the run's.
    #[staticmethod]
    #[pyo3(signature = (dir, data=None, **options))]
    fn resume(
        py: Python<'_>,
        dir: PathBuf,
        data: Option<String>,
        options: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Trainer> {
        let plan = settings(py, options)?
            .resume_plan(&dir, data)
            .map_err(|e| PyValueError::new_err(e.to_string()))?;
        let run = py
            .detach(|| Run::resume(plan, &TextOptions::default()))
            .map_err(to_py)?;
        Ok(Trainer {
            run: Mutex::new(run),
            out: Some(dir),
        })
    }

    /// Runs one optimizer step and returns its metrics (step, loss, lr, grad_norm, ...).
    fn step<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let mut guard = self.run()?;
        let run: &mut Run = &mut guard;
        let metrics = py.detach(|| run.step()).map_err(to_py)?;
        to_python(py, &metrics)
    }

    /// Runs up to `steps` optimizer steps and returns their metrics, stopping early when the
    /// run reaches its total `steps` or `callback(metrics)` returns True. Ctrl-C raises
    /// KeyboardInterrupt after the current step; the trainer stays usable.
    #[pyo3(signature = (steps, callback=None))]
    fn train<'py>(
        &self,
        py: Python<'py>,
        steps: u64,
        callback: Option<Py<PyAny>>,
    ) -> PyResult<Vec<Bound<'py, PyAny>>> {
        let mut guard = self.run()?;
        let run: &mut Run = &mut guard;
        let mut raised: Option<PyErr> = None;
        let mut after_step = |metrics: &StepMetrics| {
            Python::attach(|py| {
                let stop = py.check_signals().and_then(|()| match &callback {
                    Some(f) => f.call1(py, (to_python(py, metrics)?,))?.is_truthy(py),
                    None => Ok(false),
                });
                match stop {
                    Ok(stop) => !stop,
                    Err(e) => {
                        raised = Some(e);
                        false
                    }
                }
            })
        };
        let taken = py
            .detach(|| run.train(steps, &mut after_step))
            .map_err(to_py)?;
        if let Some(e) = raised {
            return Err(e);
        }
        taken.iter().map(|m| to_python(py, m)).collect()
    }

    /// The validation loss of the current weights, as {"loss", "perplexity", "tokens"}.
    fn evaluate<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let mut guard = self.run()?;
        let run: &mut Run = &mut guard;
        let result = py.detach(|| run.evaluate()).map_err(to_py)?;
        to_python(py, &result)
    }

    /// Saves a checkpoint of the current step into the run directory `dir` (default: `out`),
    /// with the tokenizer, so `anetrain.load(dir)` and `anetrain train --resume` read it;
    /// returns the checkpoint's path.
    #[pyo3(signature = (dir=None))]
    fn save(&self, py: Python<'_>, dir: Option<PathBuf>) -> PyResult<PathBuf> {
        let dir = dir.or_else(|| self.out.clone()).ok_or_else(|| {
            PyValueError::new_err("save() needs a directory: pass one, or out= to Trainer")
        })?;
        let mut guard = self.run()?;
        let run: &mut Run = &mut guard;
        py.detach(|| run.save(&dir)).map_err(to_py)
    }

    /// Steps completed.
    #[getter]
    fn current_step(&self) -> PyResult<u64> {
        Ok(self.run()?.trainer.current_step())
    }

    /// The run's settings as a dict (steps, batch, seq, lr, ...).
    #[getter]
    fn options<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let options = self.run()?.trainer.options().clone();
        to_python(py, &options)
    }

    fn __repr__(&self) -> PyResult<String> {
        let run = self.run()?;
        Ok(format!(
            "Trainer(step {} of {}, {})",
            run.trainer.current_step(),
            run.trainer.options().steps,
            run.trainer.engine_description()
        ))
    }
}
