//! Rule applicability measured on one machine, overriding the catalog's.
//!
//! The catalog records what the sources report, and for disputed rules that is `Unknown`
//! (ane-reference §9). `anetrain doctor --probe` settles them for one chip by compiling and
//! running a small program that breaks each rule: a failing probe shows the rule holds there, a
//! passing one shows it does not. [`MeasuredRules`] carries those answers into
//! [`check_with`](super::check_with), which then reports an `Unknown` finding as a violation or
//! drops it.

use super::chip::Chip;
use super::rules::{rule, Applies, Rule};
use crate::error::{MilError, Result};
use std::collections::BTreeMap;

/// Whether each probed rule holds on one chip, as measured there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MeasuredRules {
    chip: Chip,
    applies: BTreeMap<&'static str, Applies>,
}

impl MeasuredRules {
    /// No measurements yet for `chip`: every rule keeps the catalog's applicability.
    pub fn new(chip: Chip) -> MeasuredRules {
        MeasuredRules {
            chip,
            applies: BTreeMap::new(),
        }
    }

    /// The chip the measurements were taken on.
    pub fn chip(&self) -> Chip {
        self.chip
    }

    /// Records one probe of rule `rule_id`: `holds` when the program breaking it failed to
    /// compile, failed to run or gave wrong numbers. One failing probe is enough to show the
    /// rule holds, so a `Yes` is never turned back into a `No` by a later passing probe.
    pub fn observe(&mut self, rule_id: &str, holds: bool) -> Result<()> {
        let known = rule(rule_id).ok_or_else(|| {
            MilError::Program(format!(
                "measured rule `{rule_id}` is not in this version's constraint catalog; \
                 delete the capability file and probe again with `anetrain doctor --probe`"
            ))
        })?;
        let observed = if holds { Applies::Yes } else { Applies::No };
        let entry = self.applies.entry(known.id).or_insert(observed);
        if observed == Applies::Yes {
            *entry = Applies::Yes;
        }
        Ok(())
    }

    /// The measured applicability of `rule_id`, if it was probed.
    pub fn get(&self, rule_id: &str) -> Option<Applies> {
        self.applies.get(rule_id).copied()
    }

    /// Whether `rule` holds on `chip`: the measurement when one was taken on that chip,
    /// otherwise the catalog's entry. Measurements from another chip say nothing about this
    /// one, so they are not used.
    pub fn applies_to(&self, rule: &Rule, chip: Chip) -> Applies {
        let measured = (chip == self.chip).then(|| self.get(rule.id)).flatten();
        measured.unwrap_or_else(|| rule.applies_to(chip))
    }

    /// Every measured rule id with its answer, in id order.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, Applies)> + '_ {
        self.applies.iter().map(|(id, a)| (*id, *a))
    }

    /// No rule was measured.
    pub fn is_empty(&self) -> bool {
        self.applies.is_empty()
    }
}
