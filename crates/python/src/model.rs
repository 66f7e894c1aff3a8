//! `anetrain.load(path)`: a model, its config, the loss of token rows, reference logits,
//! generation (whole or streamed) and export.

use crate::error::{device_choice, to_py};
use anetrain_model::device_choice::DeviceChoice;
use anetrain_model::export::ExportFormat;
use anetrain_model::generate::{complete, Output, Prompt, SamplingOptions};
use anetrain_model::reference;
use anetrain_model::source::{LoadedModel, ModelSource};
use numpy::{PyArrayMethods, PyReadonlyArray2, PyUntypedArrayMethods};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError};
use std::sync::Mutex;
use std::time::Duration;

/// A loaded model: config, weights and the tokenizer it carries.
#[pyclass(module = "anetrain")]
pub struct Model {
    pub(crate) loaded: Mutex<LoadedModel>,
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

    /// The plain-Rust reference model's next-token logits after each position of `tokens`
    /// (a 1-D sequence of ids), as a float32 array of shape (len(tokens), vocab_size).
    fn logits<'py>(
        &self,
        py: Python<'py>,
        tokens: Vec<u32>,
    ) -> PyResult<Bound<'py, numpy::PyArray2<f32>>> {
        if tokens.is_empty() {
            return Err(PyValueError::new_err(
                "tokens is empty; pass at least one id",
            ));
        }
        let model = self.model()?;
        let model: &LoadedModel = &model;
        let logits = py
            .detach(|| reference::forward(&model.config, &model.params, &[tokens]))
            .map_err(to_py)?;
        numpy::PyArray1::from_vec(py, logits.data).reshape([logits.seq, logits.vocab])
    }

    /// Continues `prompt` (text, which the model's tokenizer encodes after its BOS, or a list
    /// of token ids) by up to `max_new_tokens` tokens on `device`. Returns the completion's
    /// text (token ids when the model has no tokenizer), or with `stream=True` an iterator of
    /// its pieces as they are generated. Stops at EOS and at the model's max_seq_len; Ctrl-C
    /// raises KeyboardInterrupt between tokens.
    #[pyo3(signature = (prompt, *, max_new_tokens=256, temperature=0.0, top_k=0, top_p=1.0, seed=0, device="auto", stream=false))]
    #[allow(clippy::too_many_arguments)]
    fn generate(
        &self,
        py: Python<'_>,
        prompt: &Bound<'_, PyAny>,
        max_new_tokens: usize,
        temperature: f32,
        top_k: usize,
        top_p: f32,
        seed: u64,
        device: &str,
        stream: bool,
    ) -> PyResult<Py<PyAny>> {
        let options = SamplingOptions {
            temperature,
            top_k,
            top_p,
            seed,
        };
        options
            .validate()
            .map_err(|e| PyValueError::new_err(e.to_string()))?;
        let request = Request {
            model: self.model()?.clone(),
            prompt: prompt_of(prompt)?,
            max_new_tokens,
            options,
            device: device_choice(device)?,
        };
        if stream {
            return Ok(Stream::start(request)
                .into_pyobject(py)?
                .into_any()
                .unbind());
        }
        let mut text = String::new();
        let mut ids = Vec::new();
        let mut interrupted = None;
        let has_text = py
            .detach(|| {
                request.run(|item| {
                    match item {
                        Item::Text(piece) => text.push_str(&piece),
                        Item::Token(id) => ids.push(id),
                    }
                    // Ctrl-C stops a long generation between tokens.
                    interrupted = Python::attach(|py| py.check_signals().err());
                    interrupted.is_none()
                })
            })
            .map_err(to_py)?;
        if let Some(e) = interrupted {
            return Err(e);
        }
        Ok(if has_text {
            text.into_pyobject(py)?.into_any().unbind()
        } else {
            ids.into_pyobject(py)?.into_any().unbind()
        })
    }

    /// Writes the model to `out` in `format`: `hf` (a directory transformers loads, with the
    /// tokenizer) or `llama2c` (one .bin file); refuses an `out` that holds a model already.
    #[pyo3(signature = (out, *, format="hf"))]
    fn export(&self, py: Python<'_>, out: std::path::PathBuf, format: &str) -> PyResult<()> {
        let format: ExportFormat = format
            .parse()
            .map_err(|e: anetrain_model::error::ModelError| PyValueError::new_err(e.to_string()))?;
        let model = self.model()?;
        let model: &LoadedModel = &model;
        py.detach(|| model.export(format, &out)).map_err(to_py)
    }

    fn __repr__(&self) -> String {
        format!("Model({})", self.description)
    }
}

impl Model {
    /// The loaded model, locked for this call.
    pub(crate) fn model(&self) -> PyResult<std::sync::MutexGuard<'_, LoadedModel>> {
        self.loaded
            .lock()
            .map_err(|_| to_py("the model is unusable after a failure in another thread"))
    }
}

fn prompt_of(prompt: &Bound<'_, PyAny>) -> PyResult<Prompt> {
    if let Ok(text) = prompt.extract::<String>() {
        return Ok(Prompt::Text(text));
    }
    prompt.extract::<Vec<u32>>().map(Prompt::Ids).map_err(|_| {
        PyValueError::new_err("prompt must be a str or a list of non-negative token ids")
    })
}

/// What a generation hands out: text pieces when the model has a tokenizer, else token ids.
enum Item {
    Text(String),
    Token(u32),
}

/// One generation, owning everything it needs so it can run on another thread.
struct Request {
    model: LoadedModel,
    prompt: Prompt,
    max_new_tokens: usize,
    options: SamplingOptions,
    device: DeviceChoice,
}

impl Request {
    /// Generates, handing each item to `on_item` (false stops); returns whether the items
    /// are text. Empty pieces (an unfinished character) are not handed out.
    fn run(self, mut on_item: impl FnMut(Item) -> bool) -> anetrain_model::error::Result<bool> {
        let has_text = self.model.tokenizer.is_some();
        complete(
            self.model,
            self.device,
            self.prompt,
            self.max_new_tokens,
            self.options,
            |output| match output {
                Output::Text(piece) => {
                    piece.text.is_empty() || on_item(Item::Text(piece.text.to_string()))
                }
                Output::Token(id) => on_item(Item::Token(id)),
            },
        )?;
        Ok(has_text)
    }
}

/// The pieces of a generation as they are produced (`Model.generate(..., stream=True)`): it
/// runs on its own thread, a piece ahead of the reader; dropping the iterator stops it.
#[pyclass(module = "anetrain")]
pub struct Stream {
    items: Mutex<Receiver<Result<Item, String>>>,
}

impl Stream {
    fn start(request: Request) -> Stream {
        let (tx, rx) = sync_channel(1);
        std::thread::spawn(move || {
            let sent = request.run(|item| tx.send(Ok(item)).is_ok());
            if let Err(e) = sent {
                let _ = tx.send(Err(e.to_string()));
            }
        });
        Stream {
            items: Mutex::new(rx),
        }
    }
}

#[pymethods]
impl Stream {
    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__(&self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        let mut guard = self
            .items
            .lock()
            .map_err(|_| to_py("the stream is unusable after a failure in another thread"))?;
        let items: &mut Receiver<_> = &mut guard;
        loop {
            // Waiting in slices lets Ctrl-C interrupt a slow device.
            let rx: &mut Receiver<_> = &mut *items;
            match py.detach(move || rx.recv_timeout(Duration::from_millis(100))) {
                Ok(Ok(Item::Text(piece))) => {
                    return Ok(Some(piece.into_pyobject(py)?.into_any().unbind()))
                }
                Ok(Ok(Item::Token(id))) => {
                    return Ok(Some(id.into_pyobject(py)?.into_any().unbind()))
                }
                Ok(Err(message)) => return Err(to_py(message)),
                Err(RecvTimeoutError::Timeout) => py.check_signals()?,
                Err(RecvTimeoutError::Disconnected) => return Ok(None),
            }
        }
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
