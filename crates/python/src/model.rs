//! `anetrain.load(path)`: a model, its config, and the loss of token rows.

use crate::error::{device_choice, to_py};
use anetrain_model::source::{LoadedModel, ModelSource};
use numpy::{PyReadonlyArray2, PyUntypedArrayMethods};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use std::sync::Mutex;

/// A loaded model: config, weights and the tokenizer it carries.
#[pyclass(module = "anetrain")]
pub struct Model {
    loaded: Mutex<LoadedModel>,
    config_json: String,
    description: String,
}

/// Loads a run directory (its latest checkpoint), a checkpoint, a Hugging Face directory, a
/// llama2.c `.bin`, or a preset name (random weights from `seed`).
#[pyfunction]
#[pyo3(signature = (path, seed=0))]
pub fn load(py: Python<'_>, path: std::path::PathBuf, seed: u64) -> PyResult<Model> {
    let spec = path.to_string_lossy().into_owned();
    let loaded = py
        .detach(|| ModelSource::parse(&spec)?.load(seed))
        .map_err(to_py)?;
    Ok(Model {
        config_json: loaded.config.to_hf_json(),
        description: loaded.description.clone(),
        loaded: Mutex::new(loaded),
    })
}

#[pymethods]
impl Model {
    /// The configuration as a dict (Hugging Face `config.json` fields).
    #[getter]
    fn config<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        py.import("json")?
            .call_method1("loads", (&self.config_json,))
    }

    /// The mean loss over `tokens`, a 2-D integer array of rows: each row's inputs are
    /// `row[:-1]` and its targets `row[1:]`. `device` is auto, cpu, cpu-f16, ane or reference.
    #[pyo3(signature = (tokens, *, device="auto"))]
    fn eval(&self, py: Python<'_>, tokens: &Bound<'_, PyAny>, device: &str) -> PyResult<f32> {
        let choice = device_choice(device)?;
        let rows = token_rows(tokens)?;
        let cols = rows[0].len();
        let model = self
            .loaded
            .lock()
            .map_err(|_| to_py("the model is unusable after a failure in another thread"))?;
        let model: &LoadedModel = &model;
        py.detach(|| -> anetrain_model::error::Result<f32> {
            let (mut engine, _) = choice.engine(&model.config, cols - 1, &model.params)?;
            let batch = anetrain_data::Batch::from_rows(&rows, None)?;
            Ok(engine.loss(&model.params, &batch)?.loss)
        })
        .map_err(to_py)
    }

    fn __repr__(&self) -> String {
        format!("Model({})", self.description)
    }
}

/// The rows of a 2-D array of non-negative integers, each at least an input and a target.
fn token_rows(tokens: &Bound<'_, PyAny>) -> PyResult<Vec<Vec<u32>>> {
    let numpy = tokens.py().import("numpy")?;
    let array = numpy.call_method1("asarray", (tokens,))?;
    let kind: String = array.getattr("dtype")?.getattr("kind")?.extract()?;
    if kind != "i" && kind != "u" {
        return Err(PyValueError::new_err(format!(
            "tokens must be an integer array, not dtype {}",
            array.getattr("dtype")?.str()?
        )));
    }
    if array.call_method0("min")?.extract::<i64>().unwrap_or(0) < 0 {
        return Err(PyValueError::new_err(
            "tokens must be non-negative token ids",
        ));
    }
    let wide = numpy.call_method1("asarray", (array, "int64"))?;
    let a: PyReadonlyArray2<'_, i64> = wide
        .extract()
        .map_err(|_| PyValueError::new_err("tokens must be a 2-D array: one row per sequence"))?;
    let [rows, cols] = [a.shape()[0], a.shape()[1]];
    if rows == 0 || cols < 2 {
        return Err(PyValueError::new_err(format!(
            "tokens has shape ({rows}, {cols}): pass at least one row of at least 2 tokens \
             (inputs row[:-1], targets row[1:])"
        )));
    }
    a.as_array()
        .rows()
        .into_iter()
        .map(|r| {
            r.iter()
                .map(|&t| {
                    u32::try_from(t).map_err(|_| {
                        PyValueError::new_err(format!("token id {t} does not fit in 32 bits"))
                    })
                })
                .collect()
        })
        .collect()
}
