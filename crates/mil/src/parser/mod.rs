//! Parses the MIL text dialect back into a [`Program`], with line/column errors.
//!
//! Parsing runs in three stages: the lexer turns the text into positioned tokens, a
//! recursive-descent grammar builds the IR while checking everything that needs a position
//! (names, arguments, attributes, literal types), and finally
//! [`validate_function`](crate::validate::validate_function) type-checks each function, its
//! errors mapped back to the offending statement. Positions live only in side tables, never in
//! the IR, so parsed programs compare equal to built ones.

mod cursor;
mod function;
mod lexer;
mod literal;
mod number;
mod scope;
mod suggest;

#[cfg(test)]
mod tests;

use crate::error::Result;
use crate::program::{Function, Program};
use crate::validate::validate_function;
use cursor::Cursor;
use lexer::{NumberForm, Tok};

/// Parses MIL text into a [`Program`].
///
/// Accepts what [`print_program`](crate::print_program) emits plus hand-written variations
/// (any whitespace, `//` comments, hex floats, attributes in any order, no `buildInfo`).
/// Every error is a [`MilError::Parse`](crate::MilError::Parse) with the 1-based line and
/// column of the offending token and a message saying what to change.
pub fn parse_program(text: &str) -> Result<Program> {
    let mut cursor = Cursor::new(lexer::tokenize(text)?);
    cursor.expect_keyword("program", "at the start of the text, as in `program(1.3)`")?;
    cursor.expect_punct('(', "after `program`, as in `program(1.3)`")?;
    let version = match &cursor.peek().tok {
        Tok::Number(v, NumberForm::DecimalInt | NumberForm::DecimalFloat) => v.clone(),
        _ => return Err(cursor.unexpected("a program version such as `1.3`")),
    };
    cursor.next();
    cursor.expect_punct(')', "after the program version")?;
    let build_info = if cursor.at_punct('[') {
        cursor.parse_build_info()?
    } else {
        Vec::new()
    };

    cursor.expect_punct('{', "to open the program body")?;
    let mut functions = Vec::new();
    while !cursor.at_punct('}') {
        let parsed = cursor.parse_function()?;
        let function = parsed.function;
        if functions.iter().any(|f: &Function| f.name == function.name) {
            return Err(parsed.pos.error(format!(
                "function `{}` is defined twice; rename one of them",
                function.name
            )));
        }
        validate_function(&function).map_err(|invalid| {
            let pos = invalid
                .op_index
                .and_then(|i| parsed.op_positions.get(i).copied())
                .unwrap_or(parsed.pos);
            pos.error(invalid.error.to_string())
        })?;
        functions.push(function);
    }
    cursor.next();
    if cursor.peek().tok != Tok::Eof {
        return Err(cursor.unexpected("end of input after the closing `}` of the program"));
    }
    Ok(Program {
        version,
        build_info,
        functions,
    })
}

impl Cursor {
    /// `[buildInfo = dict<string, string>({{"k", "v"}, ...})]`, entries in order.
    fn parse_build_info(&mut self) -> Result<Vec<(String, String)>> {
        self.next();
        self.expect_keyword("buildInfo", "inside the program attributes")?;
        self.expect_punct('=', "after `buildInfo`")?;
        self.expect_keyword(
            "dict",
            "after `buildInfo =`, as in `dict<string, string>({...})`",
        )?;
        self.expect_punct('<', "after `dict`")?;
        self.expect_keyword("string", "as the key type of buildInfo")?;
        self.expect_punct(',', "between the key and value types")?;
        self.expect_keyword("string", "as the value type of buildInfo")?;
        self.expect_punct('>', "to close `dict<string, string>`")?;
        self.expect_punct('(', "to open the buildInfo dictionary")?;
        self.expect_punct('{', "to open the buildInfo entries")?;
        let mut entries = Vec::new();
        while !self.at_punct('}') {
            if !entries.is_empty() {
                self.expect_punct(',', "between buildInfo entries")?;
            }
            self.expect_punct(
                '{',
                "to open a buildInfo entry, as in `{\"key\", \"value\"}`",
            )?;
            let (key, _) = self.expect_str("a buildInfo key in double quotes")?;
            self.expect_punct(',', "between a buildInfo key and its value")?;
            let (value, _) = self.expect_str("a buildInfo value in double quotes")?;
            self.expect_punct('}', "to close the buildInfo entry")?;
            entries.push((key, value));
        }
        self.next();
        self.expect_punct(')', "to close the buildInfo dictionary")?;
        self.expect_punct(']', "to close the program attributes")?;
        Ok(entries)
    }
}
