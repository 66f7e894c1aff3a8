//! Fast CPU-side operations of the training step, in the device layout: activations of one
//! sequence are `[C][S]` f32 (channel-major, row `c` holds channel `c` at every position), so
//! nothing is transposed on the way to or from a kernel.
//!
//! Forward ops overwrite their outputs; backward ops *add* into gradient buffers where
//! several contributions meet (residuals, tied weights), and say so in their docs. The plain
//! token-major reference in [`crate::reference`] is the oracle these are tested against.

pub mod cross_entropy;
pub mod dw;
pub mod elementwise;
pub mod embedding;
pub mod gemm;
pub mod norm;
pub mod rope;

pub use gemm::{matmul, MatRef};
pub use rope::Rope;
