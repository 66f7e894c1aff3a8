//! The one error type of the `mil` crate.

use thiserror::Error;

/// Everything that can go wrong building, parsing, checking or storing a MIL program.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum MilError {
    /// Malformed MIL text, with a 1-based position.
    #[error("line {line}, column {column}: {message}")]
    Parse {
        line: usize,
        column: usize,
        message: String,
    },
    /// An op whose arguments do not type-check (wrong rank, shape, dtype or missing argument).
    #[error("op `{label}` ({op}): {message}")]
    Type {
        op: String,
        label: String,
        message: String,
    },
    /// A program-level problem: duplicate or unknown names, bad outputs, no `main`.
    #[error("{0}")]
    Program(String),
    /// A BLOBFILE weight file that is truncated, corrupt or does not match the MIL that references it.
    #[error("weight file `{path}`: {message}")]
    Blob { path: String, message: String },
}

/// Result with [`MilError`].
pub type Result<T> = std::result::Result<T, MilError>;
