//! Parses the MIL text dialect back into a [`Program`], with line/column errors.

use crate::error::Result;
use crate::program::Program;

/// Parses MIL text.
pub fn parse_program(_text: &str) -> Result<Program> {
    unimplemented!("parser")
}
