//! The constraint check `AneDevice::compile` runs before Apple's compiler sees a program: a
//! rejected compile still spends one of the process's ~119 compiles (ane-reference §1.10) and
//! says less than the catalog does, so a known violation is reported with its rule and fix
//! instead.

use crate::{DeviceError, Result};
use anetrain_mil::check::{check, check_with, Chip, MeasuredRules};
use anetrain_mil::Program;

/// Which rules a device holds programs to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConstraintCheck {
    /// The catalog's rules for one chip.
    Catalog(Chip),
    /// The catalog, with the rules a capability file measured on this machine settled.
    Measured(MeasuredRules),
    /// No check: for probes, which break rules on purpose to measure them.
    Off,
}

impl ConstraintCheck {
    /// The catalog for the chip `_ANEDeviceInfo` names (`H16G`, `M4`, ...); a chip this build
    /// does not know is checked as the newest it does, whose disputed rules are mostly
    /// unknown rather than violations.
    pub fn for_chip(name: &str) -> ConstraintCheck {
        ConstraintCheck::Catalog(Chip::from_name(name).unwrap_or(Chip::M5))
    }

    /// Fails with every violation, its rule and its fix when `program` breaks a rule that
    /// holds; unknowns and warnings pass.
    pub fn check(&self, program: &Program) -> Result<()> {
        let report = match self {
            ConstraintCheck::Catalog(chip) => check(program, *chip),
            ConstraintCheck::Measured(measured) => check_with(program, measured.chip(), measured),
            ConstraintCheck::Off => return Ok(()),
        };
        if report.is_clean() {
            return Ok(());
        }
        Err(DeviceError::Layout(format!(
            "the program breaks {} ANE constraint(s) on {}, so it is not sent to Apple's \
             compiler (a rejected compile still uses up compile budget); fix the program as \
             each line says, or check it with `anetrain mil check`:\n{}",
            report.violations.len(),
            report.chip,
            report
                .violations
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n")
        )))
    }
}
