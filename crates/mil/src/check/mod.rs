//! The ANE constraint checker: which rules of the catalog ([`rules()`]) a program breaks on a
//! given chip, each reported with the op, the rule and the fix.
//!
//! Checks are chip-independent and produce findings; the catalog's per-chip applicability then
//! sorts each finding into violations (the rule holds on this chip), unknowns (nobody knows
//! whether it holds: never reported as a pass) or warnings (performance and data-dependent
//! hazards), and drops it where the rule is known not to hold. [`check_with`] lets rules
//! measured on the machine ([`MeasuredRules`], from `anetrain doctor --probe`) override that
//! applicability.

mod chip;
mod graph;
mod io;
mod measured;
mod ops;
mod rules;
mod sizes;

pub use chip::Chip;
pub use measured::MeasuredRules;
pub use rules::{rule, rules, Applies, Enforcement, Rule, Severity, Source, RULES};

use crate::program::{Function, Operation, Program};
use graph::Values;
use std::fmt;

/// One broken (or possibly broken) rule.
#[derive(Clone, Debug, PartialEq)]
pub struct Violation {
    /// The [`Rule::id`].
    pub rule: &'static str,
    /// The `name` label of the offending op, when one op is to blame.
    pub op_label: Option<String>,
    /// The MIL spelling of that op (`matmul`).
    pub op: Option<String>,
    /// What is wrong in this program, with the values and shapes involved.
    pub message: String,
    /// What to change (the rule's fix).
    pub fix: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.op_label, &self.op) {
            (Some(label), Some(op)) => write!(f, "op `{label}` ({op}): ")?,
            (Some(label), None) => write!(f, "op `{label}`: ")?,
            _ => {}
        }
        write!(f, "rule {}: {}; fix: {}", self.rule, self.message, self.fix)
    }
}

/// Everything [`check`] found for one chip.
#[derive(Clone, Debug, PartialEq)]
pub struct Report {
    pub chip: Chip,
    /// Rules known to hold on this chip that the program breaks.
    pub violations: Vec<Violation>,
    /// Rules the program breaks whose applicability on this chip is unknown or disputed.
    pub unknown: Vec<Violation>,
    /// Performance and data-dependent hazards that hold on this chip.
    pub warnings: Vec<Violation>,
}

impl Report {
    /// No violations; unknowns and warnings do not count but are still listed.
    pub fn is_clean(&self) -> bool {
        self.violations.is_empty()
    }
}

impl fmt::Display for Report {
    /// One line per finding: violations as they are, then unknowns and warnings with a prefix.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for v in &self.violations {
            writeln!(f, "{v}")?;
        }
        for v in &self.unknown {
            writeln!(f, "unknown on {}: {v}", self.chip)?;
        }
        for v in &self.warnings {
            writeln!(f, "warning: {v}")?;
        }
        Ok(())
    }
}

/// A chip-independent observation that a program breaks rule `rule`.
struct Finding {
    rule: &'static str,
    op: Option<(String, String)>,
    message: String,
}

impl Finding {
    /// A finding blamed on one op.
    fn at(rule: &'static str, op: &Operation, message: String) -> Finding {
        Finding {
            rule,
            op: Some((op.label.clone(), op.op.name().to_string())),
            message,
        }
    }

    /// A finding about the function as a whole (its inputs, outputs or op mix).
    fn function(rule: &'static str, message: String) -> Finding {
        Finding {
            rule,
            op: None,
            message,
        }
    }
}

/// Checks every function of `program` against the catalog for `chip`. Never fails: invalid IR
/// (missing values, wrong argument kinds) is skipped here and left to [`crate::validate()`].
pub fn check(program: &Program, chip: Chip) -> Report {
    check_with(program, chip, &MeasuredRules::new(chip))
}

/// [`check`], with each rule that `measured` settled for `chip` sorted by the measurement
/// instead of the catalog: a measured `Yes` reports an unknown finding as a violation (or
/// warning), a measured `No` drops it.
pub fn check_with(program: &Program, chip: Chip, measured: &MeasuredRules) -> Report {
    let mut findings = Vec::new();
    for function in &program.functions {
        check_function(function, &mut findings);
    }
    sizes::check_weight_bytes(program, &mut findings);

    let mut report = Report {
        chip,
        violations: Vec::new(),
        unknown: Vec::new(),
        warnings: Vec::new(),
    };
    for finding in findings {
        let (applies, severity, fix) = match rule(finding.rule) {
            Some(r) => (measured.applies_to(r, chip), r.severity, r.fix),
            None => (
                Applies::Yes,
                Severity::Error,
                "(rule missing from the catalog)",
            ),
        };
        let (op_label, op) = finding.op.unzip();
        let violation = Violation {
            rule: finding.rule,
            op_label,
            op,
            message: finding.message,
            fix: fix.to_string(),
        };
        match (applies, severity) {
            (Applies::No, _) => {}
            (Applies::Unknown, _) => report.unknown.push(violation),
            (Applies::Yes, Severity::Error) => report.violations.push(violation),
            (Applies::Yes, Severity::Warning) => report.warnings.push(violation),
        }
    }
    report
}

fn check_function(function: &Function, findings: &mut Vec<Finding>) {
    let values = Values::new(function);
    io::check_io(function, &values, findings);
    graph::check_liveness(function, &values, findings);
    graph::check_anchor(function, findings);
    ops::check_ops(function, &values, findings);
    sizes::check_extents(function, findings);
    sizes::check_working_sets(function, &values, findings);
}
