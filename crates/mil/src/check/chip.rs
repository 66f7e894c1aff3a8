//! Apple silicon chip generations, the unit the constraint catalog is recorded per.

use crate::error::{MilError, Result};
use std::fmt;

/// An Apple M-series chip generation; Pro, Max and Ultra variants share their base chip's ANE.
///
/// Each has an ANE generation name (ane-reference §0.2): H13, H14, H15, H16. The M5 is
/// disputed: MX's M5 probe calls it "H16 family, same as M4", while ANEForge maps it to "H17s"
/// in the same capability tier as H16. [`Chip::from_name`] therefore accepts both H16- and
/// H17-style names, mapping H16 to the M4 and H17 to the M5.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Chip {
    M1,
    M2,
    M3,
    M4,
    M5,
}

impl Chip {
    /// Every chip, oldest first; the index of a chip here indexes per-chip catalog data.
    pub const ALL: [Chip; 5] = [Chip::M1, Chip::M2, Chip::M3, Chip::M4, Chip::M5];

    /// The marketing name, `M1` ... `M5`.
    pub fn name(self) -> &'static str {
        match self {
            Chip::M1 => "M1",
            Chip::M2 => "M2",
            Chip::M3 => "M3",
            Chip::M4 => "M4",
            Chip::M5 => "M5",
        }
    }

    /// The ANE generation name; the M5's is disputed (H16 per MX, H17s per ANEForge).
    pub fn generation(self) -> &'static str {
        match self {
            Chip::M1 => "H13",
            Chip::M2 => "H14",
            Chip::M3 => "H15",
            Chip::M4 => "H16",
            Chip::M5 => "H16/H17s",
        }
    }

    /// Position in [`Chip::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// Parses a chip or ANE generation name, case-insensitively: `m4`, `M4 Max`, `Apple M4 Pro`,
    /// `h16`, `H16G` (what `aneSubType` reports on an M4), `h17s`.
    pub fn from_name(name: &str) -> Result<Chip> {
        let lower = name.trim().to_ascii_lowercase();
        let base = lower.strip_prefix("apple").unwrap_or(&lower).trim_start();
        let token = base.split_whitespace().next().unwrap_or("");
        let chip = match token {
            "m1" => Some(Chip::M1),
            "m2" => Some(Chip::M2),
            "m3" => Some(Chip::M3),
            "m4" => Some(Chip::M4),
            "m5" => Some(Chip::M5),
            _ => Chip::from_generation(token),
        };
        chip.ok_or_else(|| {
            MilError::Program(format!(
                "unknown chip `{name}`; valid names are m1, m2, m3, m4, m5 (optionally with Pro, \
                 Max or Ultra) or an ANE generation h13, h14, h15, h16 (also h16g), h17 (also h17s)"
            ))
        })
    }

    /// An ANE generation name with an optional letter suffix (`h16g`, `h17s`).
    fn from_generation(token: &str) -> Option<Chip> {
        let digits = token.strip_prefix('h')?;
        let number = digits.trim_end_matches(|c: char| c.is_ascii_alphabetic());
        match number {
            "13" => Some(Chip::M1),
            "14" => Some(Chip::M2),
            "15" => Some(Chip::M3),
            "16" => Some(Chip::M4),
            "17" => Some(Chip::M5),
            _ => None,
        }
    }
}

impl fmt::Display for Chip {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name(), self.generation())
    }
}
