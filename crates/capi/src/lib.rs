//! The anetrain C library: `libanetrain` and its header `include/anetrain.h`.
//!
//! A thin translation layer over the anetrain crates: every entry point checks its pointers,
//! runs inside a panic guard, and returns a status with the message kept per thread. It owns
//! no logic of its own.

pub mod generate;
pub mod kernel;
pub mod model;
pub mod status;
pub mod train;

pub use generate::{GenerateOptions, GenerationReport};
pub use kernel::{Device, Kernel, TensorInfo};
pub use model::Model;
pub use status::*;
pub use train::{StepReport, Trainer};
