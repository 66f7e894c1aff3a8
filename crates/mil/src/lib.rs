//! MIL, the kernel language of anetrain.
//!
//! Every kernel anetrain runs is a MIL program: the ANE device hands its text to Apple's
//! compiler and the CPU device interprets the same program. This crate owns the typed
//! program ([`Program`]), the builder that model code writes kernels with, the printer and
//! parser for the text dialect the ANE compiler accepts, the BLOBFILE weight format, and
//! the constraint checker.

pub mod blob;
pub mod builder;
pub mod check;
pub mod error;
pub mod infer;
pub mod ops;
pub mod parser;
pub mod printer;
pub mod program;
pub mod types;
pub mod validate;

pub use blob::WeightFiles;
pub use builder::{Builder, Bundle, ConvOptions, Var};
pub use check::{check, Chip, Report, Violation};
pub use error::{MilError, Result};
pub use infer::{OpKind, Resolved};
pub use ops::{ArgKind, ArgSpec, Op};
pub use parser::parse_program;
pub use printer::print_program;
pub use program::{Argument, Function, Operation, Output, Program, DEFAULT_BUILD_INFO};
pub use types::{DType, Literal, Scalar, TensorData, TensorType, Type};
pub use validate::{resolve_main, validate};
