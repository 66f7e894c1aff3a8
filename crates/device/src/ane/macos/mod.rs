//! The framework side of the ANE device, built only for `aarch64-apple-darwin`.

mod device;
mod ffi;
mod kernel;
mod model;
mod runtime;
mod surface;

pub use device::AneDevice;
pub use kernel::AneKernel;
pub use runtime::AneRuntime;
