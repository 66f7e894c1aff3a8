//! Library errors as Python exceptions carrying the library's message.

use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::PyErr;

create_exception!(
    anetrain,
    AnetrainError,
    PyException,
    "An error reported by anetrain: the message names the problem and the fix."
);

/// Converts any library error into an [`AnetrainError`] with its message.
pub fn to_py(e: impl std::fmt::Display) -> PyErr {
    AnetrainError::new_err(e.to_string())
}

/// The device named `name`, or a `ValueError` listing the names.
pub fn device_choice(name: &str) -> pyo3::PyResult<anetrain_model::device_choice::DeviceChoice> {
    name.parse()
        .map_err(|e: anetrain_model::error::ModelError| {
            pyo3::exceptions::PyValueError::new_err(e.to_string())
        })
}
