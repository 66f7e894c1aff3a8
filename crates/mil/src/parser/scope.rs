//! The names visible inside one function while it is parsed: values (inputs and op outputs,
//! each defined once, before use) and op labels (unique per function).

use super::lexer::Pos;
use super::suggest::did_you_mean;
use crate::error::Result;
use crate::ops::Op;
use std::collections::HashMap;

/// Where a value comes from.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ValueInfo {
    /// The op that computes it, or `None` for a function input.
    pub producer: Option<Op>,
    pub pos: Pos,
}

/// Values and labels defined so far in the function being parsed.
#[derive(Default)]
pub(crate) struct Scope {
    values: HashMap<String, ValueInfo>,
    labels: HashMap<String, Pos>,
}

impl Scope {
    /// Defines value `name`, rejecting a second definition (MIL values are single-assignment).
    pub fn define(&mut self, name: &str, info: ValueInfo) -> Result<()> {
        if let Some(first) = self.values.get(name) {
            return Err(info.pos.error(format!(
                "value `{name}` is already defined at line {}, column {}; give this one another name",
                first.pos.line, first.pos.column
            )));
        }
        self.values.insert(name.to_string(), info);
        Ok(())
    }

    /// Records op label `label`, rejecting duplicates (Apple's tools key ops by label).
    pub fn define_label(&mut self, label: &str, pos: Pos) -> Result<()> {
        if let Some(first) = self.labels.get(label) {
            return Err(pos.error(format!(
                "label {label:?} is already used by the op at line {}, column {}; labels must be unique in a function",
                first.line, first.column
            )));
        }
        self.labels.insert(label.to_string(), pos);
        Ok(())
    }

    /// The value `name` used at `pos`, which must already be defined.
    pub fn lookup(&self, name: &str, pos: Pos, context: &str) -> Result<ValueInfo> {
        if let Some(info) = self.values.get(name) {
            return Ok(*info);
        }
        let mut known: Vec<&str> = self.values.keys().map(String::as_str).collect();
        // Deterministic suggestions regardless of hash order.
        known.sort_unstable();
        let hint = did_you_mean(name, &known, "; define it before this statement");
        Err(pos.error(format!("{context} `{name}` is not defined{hint}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::MilError;

    fn at(line: usize, column: usize) -> Pos {
        Pos { line, column }
    }

    #[test]
    fn values_are_single_assignment_and_defined_before_use() {
        let mut scope = Scope::default();
        scope
            .define(
                "h",
                ValueInfo {
                    producer: Some(Op::Relu),
                    pos: at(2, 9),
                },
            )
            .unwrap();
        let err = scope
            .define(
                "h",
                ValueInfo {
                    producer: None,
                    pos: at(5, 3),
                },
            )
            .unwrap_err();
        assert_eq!(
            err,
            MilError::Parse {
                line: 5,
                column: 3,
                message:
                    "value `h` is already defined at line 2, column 9; give this one another name"
                        .into()
            }
        );
        assert_eq!(
            scope.lookup("h", at(1, 1), "value").unwrap().producer,
            Some(Op::Relu)
        );
        let err = scope
            .lookup("hh", at(7, 4), "argument `x` of relu names value")
            .unwrap_err();
        assert_eq!(err.to_string(), "line 7, column 4: argument `x` of relu names value `hh` is not defined; did you mean `h`?");
    }

    #[test]
    fn labels_are_unique() {
        let mut scope = Scope::default();
        scope.define_label("a", at(1, 1)).unwrap();
        let err = scope.define_label("a", at(3, 40)).unwrap_err();
        assert!(
            err.to_string().starts_with(
                "line 3, column 40: label \"a\" is already used by the op at line 1, column 1"
            ),
            "{err}"
        );
    }
}
