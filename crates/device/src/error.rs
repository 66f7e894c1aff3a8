//! The one error type of the `device` crate.

use anetrain_mil::MilError;
use thiserror::Error;

/// Everything that can go wrong compiling or running a kernel.
#[derive(Debug, Error)]
pub enum DeviceError {
    /// The program itself is invalid (bad types, missing weights, unsupported op arguments).
    #[error(transparent)]
    Mil(#[from] MilError),
    /// The program is valid MIL but this device cannot run it; names the op and the reason.
    #[error("cannot compile op `{label}` ({op}): {message}")]
    Unsupported {
        op: String,
        label: String,
        message: String,
    },
    /// An input or output buffer of the wrong size, index or region.
    #[error("{0}")]
    Layout(String),
    /// No input or output has that name.
    #[error("no kernel input or output is named `{0}`")]
    UnknownPort(String),
    /// The device is not available here (no ANE, wrong platform, framework missing).
    #[error("{0}")]
    Unavailable(String),
    /// The kernel's buffers would not fit in the available memory.
    #[error("{0}")]
    OutOfMemory(String),
    /// The device's own runtime reported a failure; carries its message.
    #[error("{0}")]
    Runtime(String),
}

/// Result with [`DeviceError`].
pub type Result<T> = std::result::Result<T, DeviceError>;
