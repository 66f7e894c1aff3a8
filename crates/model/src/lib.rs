//! Transformers for anetrain: configs, parameters, checkpoint import/export, the plain-Rust
//! reference model, and (later) the MIL kernels, trainer and generation.

pub mod config;
pub mod cpu_ops;
pub mod engine;
pub mod error;
pub mod generate;
pub mod hf;
pub mod kernels;
pub mod llama2c;
pub mod lora;
pub mod params;
pub mod reference;
pub mod train;
