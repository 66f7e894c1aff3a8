//! The anetrain C library: `libanetrain` and its header `include/anetrain.h`.
//!
//! A thin translation layer over the anetrain crates: every entry point checks its pointers,
//! runs inside a panic guard, and returns a status with the message kept per thread. It owns
//! no logic of its own.

mod device;
pub mod kernel;
pub mod status;

pub use kernel::{Device, Kernel, TensorInfo};
pub use status::*;
