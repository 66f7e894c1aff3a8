//! Transformers for anetrain: configs, parameters, checkpoint import/export, the plain-Rust
//! reference model, the MIL kernels, trainer and generation, and the two choices every front
//! end makes: which model a path holds ([`source::ModelSource`]) and where it runs
//! ([`device_choice::DeviceChoice`]).

pub mod config;
pub mod cpu_ops;
pub mod device_choice;
pub mod engine;
pub mod error;
pub mod export;
pub mod generate;
pub mod hf;
pub mod kernels;
pub mod llama2c;
pub mod lora;
pub mod params;
pub mod probes;
pub mod reference;
pub mod source;
pub mod train;
