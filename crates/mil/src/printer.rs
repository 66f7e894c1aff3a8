//! Prints a [`Program`] in exactly the text dialect the ANE compiler accepts (ane-reference §3).

use crate::program::Program;

/// The MIL text of `program`.
pub fn print_program(_program: &Program) -> String {
    unimplemented!("printer")
}
