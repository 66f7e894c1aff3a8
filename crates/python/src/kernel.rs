//! `anetrain.mil`: compile MIL text on a device and run it on numpy arrays.

use crate::error::{device_choice, to_py, AnetrainError};
use anetrain_device::TensorSpec;
use anetrain_mil::{parse_program, WeightFiles};
use half::f16;
use numpy::{PyArray1, PyArrayMethods, PyReadonlyArrayDyn, PyUntypedArrayMethods};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};
use std::path::PathBuf;
use std::sync::Mutex;

/// A compiled MIL program; `run(**inputs)` evaluates it.
#[pyclass(module = "anetrain.mil")]
pub struct Kernel {
    inner: Mutex<Box<dyn anetrain_device::Kernel>>,
    inputs: Vec<TensorSpec>,
    outputs: Vec<TensorSpec>,
    device: String,
}

/// Compiles the `main` function of MIL `text` on `device`. `weights` is the directory that
/// BLOBFILE paths `@model_path/...` are relative to, or a dict from each BLOBFILE path (as the
/// MIL writes it) to the file's bytes.
#[pyfunction]
#[pyo3(signature = (text, weights=None, device="cpu"))]
pub fn compile(
    py: Python<'_>,
    text: &str,
    weights: Option<&Bound<'_, PyAny>>,
    device: &str,
) -> PyResult<Kernel> {
    let program = parse_program(text).map_err(|e| to_py(format!("MIL text: {e}")))?;
    let files = match weights {
        None => WeightFiles::new(),
        Some(w) if w.is_instance_of::<PyDict>() => {
            let mut files = WeightFiles::new();
            for (path, bytes) in w.cast::<PyDict>()?.iter() {
                let path: String = path.extract()?;
                let bytes = bytes.cast::<PyBytes>().map_err(|_| {
                    PyTypeError::new_err(format!("weights[{path:?}] must be bytes"))
                })?;
                files.insert(path, bytes.as_bytes().to_vec());
            }
            files
        }
        Some(w) => {
            let dir: PathBuf = w.extract().map_err(|_| {
                PyTypeError::new_err("weights must be a directory path or a dict of path -> bytes")
            })?;
            WeightFiles::load_dir(&program, &dir).map_err(to_py)?
        }
    };
    let choice = device_choice(device)?;
    py.detach(move || {
        let (device, _) = choice.device().map_err(to_py)?;
        let inner = device.compile(&program, &files).map_err(to_py)?;
        Ok(Kernel {
            inputs: inner.inputs().to_vec(),
            outputs: inner.outputs().to_vec(),
            inner: Mutex::new(inner),
            device: device.name(),
        })
    })
}

/// Writes `value` into input `index` of `kernel`, straight from the array's buffer when it is
/// a C-contiguous float32 array and converted otherwise; its shape must be the declared one.
fn write_input(
    kernel: &mut dyn anetrain_device::Kernel,
    index: usize,
    spec: &TensorSpec,
    value: &Bound<'_, PyAny>,
) -> PyResult<()> {
    let check = |shape: &[usize]| {
        if shape != spec.ty.shape.as_slice() {
            Err(PyValueError::new_err(format!(
                "input `{}` has shape {shape:?} but the kernel declares {} (shape {:?})",
                spec.name, spec.ty, spec.ty.shape
            )))
        } else {
            Ok(())
        }
    };
    let write = |kernel: &mut dyn anetrain_device::Kernel, data: &[f32]| {
        kernel.write_input(index, data).map_err(to_py)
    };
    if let Ok(a) = value.extract::<PyReadonlyArrayDyn<'_, f32>>() {
        check(a.shape())?;
        return match a.as_slice() {
            Ok(data) => write(kernel, data),
            Err(_) => write(kernel, &a.as_array().iter().copied().collect::<Vec<_>>()),
        };
    }
    if let Ok(a) = value.extract::<PyReadonlyArrayDyn<'_, f16>>() {
        check(a.shape())?;
        let wide: Vec<f32> = a.as_array().iter().map(|v| v.to_f32()).collect();
        return write(kernel, &wide);
    }
    let numpy = value.py().import("numpy")?;
    let converted = numpy
        .call_method1("asarray", (value, "float32"))
        .map_err(|e| {
            PyTypeError::new_err(format!(
                "input `{}` must be a numpy array (or convertible to float32): {e}",
                spec.name
            ))
        })?;
    let a = converted.extract::<PyReadonlyArrayDyn<'_, f32>>()?;
    check(a.shape())?;
    write(kernel, &a.as_array().iter().copied().collect::<Vec<_>>())
}

#[pymethods]
impl Kernel {
    /// Runs the kernel: every input by name as a numpy array of its declared shape (float32 or
    /// float16); returns a dict of output name -> float32 array. Inputs not given keep the
    /// values of the previous run.
    #[pyo3(signature = (**inputs))]
    fn run<'py>(
        &self,
        py: Python<'py>,
        inputs: Option<&Bound<'py, PyDict>>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let mut kernel = self.inner.lock().map_err(|_| {
            AnetrainError::new_err("the kernel is unusable after a failure in another thread")
        })?;
        if let Some(inputs) = inputs {
            for (name, value) in inputs.iter() {
                let name: String = name.extract()?;
                let index = self
                    .inputs
                    .iter()
                    .position(|s| s.name == name)
                    .ok_or_else(|| {
                        PyValueError::new_err(format!(
                            "the kernel has no input named `{name}`; its inputs are: {}",
                            describe(&self.inputs)
                        ))
                    })?;
                write_input(&mut **kernel, index, &self.inputs[index], &value)?;
            }
        }
        let outputs = &self.outputs;
        let kernel: &mut dyn anetrain_device::Kernel = &mut **kernel;
        let results = py.detach(|| -> anetrain_device::Result<Vec<Vec<f32>>> {
            kernel.run()?;
            outputs
                .iter()
                .enumerate()
                .map(|(i, spec)| {
                    let mut data = vec![0f32; spec.numel()];
                    kernel.read_output(i, &mut data)?;
                    Ok(data)
                })
                .collect()
        });
        let results = results.map_err(to_py)?;
        let dict = PyDict::new(py);
        for (spec, data) in outputs.iter().zip(results) {
            let array = PyArray1::from_vec(py, data).reshape(spec.ty.shape.clone())?;
            dict.set_item(&spec.name, array)?;
        }
        Ok(dict)
    }

    /// The inputs as a list of (name, dtype, shape).
    #[getter]
    fn inputs(&self) -> Vec<(String, String, Vec<usize>)> {
        ports(&self.inputs)
    }

    /// The outputs as a list of (name, dtype, shape).
    #[getter]
    fn outputs(&self) -> Vec<(String, String, Vec<usize>)> {
        ports(&self.outputs)
    }

    /// The device the kernel was compiled for, e.g. `cpu (f32)`.
    #[getter]
    fn device(&self) -> &str {
        &self.device
    }

    fn __repr__(&self) -> String {
        format!(
            "Kernel(device={:?}, inputs=[{}], outputs=[{}])",
            self.device,
            describe(&self.inputs),
            describe(&self.outputs)
        )
    }
}

fn ports(specs: &[TensorSpec]) -> Vec<(String, String, Vec<usize>)> {
    specs
        .iter()
        .map(|s| (s.name.clone(), s.ty.dtype.to_string(), s.ty.shape.clone()))
        .collect()
}

fn describe(specs: &[TensorSpec]) -> String {
    specs
        .iter()
        .map(|s| format!("{} {}", s.name, s.ty))
        .collect::<Vec<_>>()
        .join(", ")
}
