//! The one error type of the `model` crate.

use std::path::PathBuf;

use thiserror::Error;

/// Everything that can go wrong configuring a model, loading or saving its weights, or feeding it
/// tokens, by kind: user input ([`Input`](Self::Input)), configuration
/// ([`Config`](Self::Config)), files ([`Io`](Self::Io), [`Format`](Self::Format) and the tensor
/// variants), devices ([`Device`](Self::Device), [`DeviceUnavailable`](Self::DeviceUnavailable))
/// and bugs ([`Internal`](Self::Internal)). Each message names the culprit (field, file,
/// tensor) and, where there is one, the fix.
#[derive(Debug, Error)]
pub enum ModelError {
    /// A model configuration that cannot describe a working transformer.
    #[error("invalid model config: {0}")]
    Config(String),
    /// The operating system refused to read or write a file.
    #[error("{path}: {source}")]
    Io {
        /// The file involved.
        path: PathBuf,
        /// What the operating system reported.
        source: std::io::Error,
    },
    /// A file that exists but whose content is malformed (bad JSON, bad header, wrong size).
    #[error("{path}: {message}")]
    Format {
        /// The file involved.
        path: PathBuf,
        /// What is wrong and how to fix it.
        message: String,
    },
    /// A checkpoint lacks a tensor the configuration requires.
    #[error("tensor `{name}` is missing from {location}; the config requires it (check that the checkpoint matches config.json)")]
    MissingTensor {
        /// Hugging Face name of the tensor.
        name: String,
        /// Where it was looked for.
        location: String,
    },
    /// A tensor whose shape disagrees with the configuration.
    #[error("tensor `{name}` has shape {found:?} but the config requires {expected:?} (check that the checkpoint matches config.json)")]
    ShapeMismatch {
        /// Hugging Face name of the tensor.
        name: String,
        /// Shape the configuration implies.
        expected: Vec<usize>,
        /// Shape found.
        found: Vec<usize>,
    },
    /// A weight that is NaN or infinite.
    #[error("tensor `{name}` in {location} holds {value} at element {index}; the weights are corrupt or came from a diverged run: start from an earlier checkpoint or other weights")]
    NonFinite {
        /// Hugging Face name of the tensor.
        name: String,
        /// Index of the first non-finite element.
        index: usize,
        /// Its value.
        value: f32,
        /// Where the weights came from.
        location: String,
    },
    /// A kernel failed to compile or run on its device; carries the device's own message.
    #[error("kernel `{kernel}` failed on the device: {source}")]
    Device {
        /// Which kernel (e.g. `qkv_fwd`).
        kernel: String,
        /// What the device reported.
        source: anetrain_device::DeviceError,
    },
    /// The device a user chose cannot be used on this machine.
    #[error("device `{device}` is not usable here: {source}")]
    DeviceUnavailable {
        /// The device name as the user typed it.
        device: &'static str,
        /// Why (the probe's error, which names the alternative).
        source: anetrain_device::DeviceError,
    },
    /// A bug or a failed worker thread, not something the user did; please report it.
    #[error("internal error: {0} (this is a bug in anetrain; please report it)")]
    Internal(String),
    /// The MIL builder refused a kernel for this config (shapes its type checker rejects).
    #[error("cannot build a kernel for this config: {0}")]
    Mil(#[from] anetrain_mil::MilError),
    /// A dataset or tokenizer problem; the data crate's message names the file and position.
    #[error(transparent)]
    Data(#[from] anetrain_data::DataError),
    /// Another live process is writing the run directory.
    #[error("{} is in use by another anetrain (pid {pid}); wait for it to finish or stop it, or choose another --out", dir.display())]
    RunLocked {
        /// The run directory.
        dir: PathBuf,
        /// The process holding its lock.
        pid: u32,
    },
    /// Training overflowed step after step: the weights or the learning rate are unusable.
    #[error("the run diverged: the last {steps} steps (up to step {step}) all had non-finite gradients (loss {loss}), so none was applied; lower --lr (now {lr:.2e}), check the data and the starting weights, or raise --max-skipped-steps; the last checkpoint is untouched")]
    Diverged {
        /// Steps skipped in a row.
        steps: u64,
        /// The last step run.
        step: u64,
        /// Its loss.
        loss: f32,
        /// Its learning rate.
        lr: f32,
    },
    /// A training setting that cannot work; the message names the flag and the fix.
    #[error("{0}")]
    Options(String),
    /// Tokens or batches the model cannot take (out-of-vocabulary ids, ragged rows, empty batch).
    #[error("invalid input: {0}")]
    Input(String),
}

impl ModelError {
    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        ModelError::Io {
            path: path.into(),
            source,
        }
    }

    /// A malformed-file error for `path`.
    pub fn format(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        ModelError::Format {
            path: path.into(),
            message: message.into(),
        }
    }
}

/// Result with [`ModelError`].
pub type Result<T> = std::result::Result<T, ModelError>;
