//! The Apple Neural Engine device: Apple's private `AppleNeuralEngine.framework`, loaded at run
//! time and driven through the Objective-C runtime (ane-reference §1, §2).
//!
//! Everything that does not need the framework is plain Rust, compiled and tested on every
//! platform: surface sizing and shape rules ([`surface_layout`]), what the loaded model reports
//! about its ports ([`attributes`]), fp32 ↔ fp16 packing ([`pack`]), the weights dictionary
//! and model directory ([`weights_dict`]), the compile budget ([`budget`]), the constraint
//! check run before every compile ([`constraints`]), kernel identity and caching ([`cache`]),
//! the capability file ([`capabilities`]), request port order ([`port_order`]) and the
//! self-test kernel ([`self_test`]). The framework calls live in `macos` and exist only on
//! `aarch64-apple-darwin`; elsewhere [`AneDevice::new`] returns
//! [`DeviceError::Unavailable`](crate::DeviceError::Unavailable).
//!
//! `--device auto` calls [`AneDevice::probe`]: the ANE when the framework loads and the
//! self-test kernel gives the right numbers, otherwise the error explains why the CPU is used.

pub mod attributes;
pub mod budget;
pub mod cache;
pub mod capabilities;
pub mod constraints;
mod info;
pub mod pack;
pub mod port_order;
pub mod self_test;
pub mod surface_layout;
pub mod weights_dict;

#[cfg(all(target_os = "macos", target_arch = "aarch64"))]
mod macos;
#[cfg(not(all(target_os = "macos", target_arch = "aarch64")))]
mod unsupported;

pub use budget::CompileBudget;
pub use constraints::ConstraintCheck;
pub use info::AneInfo;
#[cfg(all(target_os = "macos", target_arch = "aarch64"))]
pub use macos::{AneDevice, AneKernel, AneRuntime};
pub use surface_layout::SurfacePolicy;
#[cfg(not(all(target_os = "macos", target_arch = "aarch64")))]
pub use unsupported::AneDevice;
