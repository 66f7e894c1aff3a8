//! `anetrain._native`, the extension module behind the `anetrain` Python package.
//!
//! A translation layer over the anetrain crates: Python values in, library calls (with the GIL
//! released while they compute), Python values and exceptions out. It owns no logic.

mod error;
mod kernel;
mod model;
mod trainer;

use pyo3::prelude::*;

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("AnetrainError", m.py().get_type::<error::AnetrainError>())?;
    m.add_class::<kernel::Kernel>()?;
    m.add_function(wrap_pyfunction!(kernel::compile, m)?)?;
    m.add_class::<model::Model>()?;
    m.add_function(wrap_pyfunction!(model::load, m)?)?;
    m.add_class::<model::Stream>()?;
    m.add_class::<trainer::Trainer>()?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
