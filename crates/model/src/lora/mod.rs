//! LoRA adapters on a frozen base: the config, the math of one adapted projection, the
//! whole-model adapter, and the PEFT and mlx-lm file formats.
//!
//! - [`LoraConfig`] / [`Target`]: rank, alpha, targets, layers (defaults in [`config`]).
//! - [`LoraLinear`]: `y = x Wᵀ + s·(x Aᵀ) Bᵀ`, adapter gradients from `x` and `dy`, fusion.
//! - [`Adapter`]: every adapted projection of a base, built to fit it.
//! - [`LoraRequest`]: a run's `--lora-*` / `--adapter` flags resolved into the adapter to train.
//! - [`peft`] and [`mlx`]: what sets the PEFT and mlx-lm formats apart, as data (file and
//!   tensor names, transposition, config fields); [`load_adapter`] and [`save_adapter`] read
//!   and write either through them, [`fuse_to_hf`] writes base + adapter as one model.

pub mod adapter;
pub mod config;
pub mod format;
pub mod fuse;
pub mod linear;
pub mod mlx;
pub mod peft;
pub mod request;

pub use adapter::Adapter;
pub use config::{Layers, LoraConfig, Target};
pub use format::{load_adapter, save_adapter, AdapterFormat};
pub use fuse::fuse_to_hf;
pub use linear::{Layout, LoraLinear};
pub use request::LoraRequest;
