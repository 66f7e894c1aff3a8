//! The plain-Rust fp32 reference transformer: the independent oracle the MIL kernels are tested
//! against, written to read like the math of Hugging Face's Llama and Qwen3.
//!
//! Conventions shared by every module here:
//! - activations are token-major `[rows, width]`, row-major; weights are `[out, in]`;
//! - forward functions overwrite their outputs; backward functions *add* into gradient buffers,
//!   so contributions from several branches (residuals, tied weights, GQA) simply accumulate.
//!
//! Each building block (linear, RMSNorm, RoPE, softmax, attention, SwiGLU, cross-entropy) has
//! its forward and backward side by side; [`model`] chains them.

pub mod attention;
pub mod cross_entropy;
pub mod linear;
pub mod model;
pub mod norm;
pub mod rope;
pub mod softmax;
pub mod swiglu;

pub use model::{forward, loss_and_grads, Logits};
