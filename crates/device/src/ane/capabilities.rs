//! The capability file: what a probe run learned about one machine's ANE (which ops, dtypes and
//! widths compile and run), so later runs can pick kernels and surface rules without re-probing.
//!
//! A failed compile cannot be recovered inside a process (ane-reference §1.7), so probes run in
//! child processes, each adding its results to the file; hence [`Capabilities::merge`].
//!
//! Format (JSON, versioned):
//! ```json
//! { "version": 1, "chip": "H16G", "macos": "Version 15.3 (Build 24D60)",
//!   "probes": [ { "op": "gelu", "dtype": "fp16", "width": 64,
//!                 "compiled": true, "ran": false, "error": "…status=0x1d…" } ] }
//! ```

use crate::{DeviceError, Result};
use anetrain_mil::check::{Chip, MeasuredRules};
use anetrain_mil::DType;
use serde::{Deserialize, Serialize};
use std::fs;
use std::path::{Path, PathBuf};

/// The format version this build reads and writes.
pub const CAPABILITIES_VERSION: u32 = 1;

/// Everything probed on one machine.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Capabilities {
    /// Format version; files from a newer version are refused rather than misread.
    pub version: u32,
    /// The ANE sub-type `_ANEDeviceInfo` reports, e.g. `H16G`.
    pub chip: String,
    /// The macOS version string the probes ran on (private APIs change between releases).
    pub macos: String,
    /// One result per (op, dtype, width), sorted by that triple.
    pub probes: Vec<Probe>,
}

/// The outcome of compiling and running one small kernel.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Probe {
    /// The MIL op under test, or the id of the probe kernel (`anetrain doctor --probe`).
    pub op: String,
    /// Its I/O dtype in MIL spelling (`fp16`, `fp32`).
    pub dtype: String,
    /// The last-axis width of its tensors.
    pub width: usize,
    /// Whether the framework compiled and loaded it.
    pub compiled: bool,
    /// Whether an evaluation succeeded (and matched the CPU reference).
    pub ran: bool,
    /// The framework's error text when either step failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Probe {
    fn key(&self) -> (&str, &str, usize) {
        (&self.op, &self.dtype, self.width)
    }
}

impl Capabilities {
    /// An empty record for `chip` on `macos`.
    pub fn new(chip: impl Into<String>, macos: impl Into<String>) -> Capabilities {
        Capabilities {
            version: CAPABILITIES_VERSION,
            chip: chip.into(),
            macos: macos.into(),
            probes: Vec::new(),
        }
    }

    /// Parses a capability file's text; `source` names it in errors.
    pub fn from_json(text: &str, source: &str) -> Result<Capabilities> {
        let bad = |why: String| {
            DeviceError::Runtime(format!(
                "capability file `{source}` is malformed: {why}; delete it and run \
                 `anetrain doctor` to probe again"
            ))
        };
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|e| bad(e.to_string()))?;
        let version = value
            .get("version")
            .and_then(serde_json::Value::as_u64)
            .ok_or_else(|| bad("it has no numeric `version`".into()))?;
        if version != u64::from(CAPABILITIES_VERSION) {
            return Err(DeviceError::Runtime(format!(
                "capability file `{source}` has format version {version}, this build reads \
                 version {CAPABILITIES_VERSION}; delete it and run `anetrain doctor` to probe again"
            )));
        }
        let mut caps: Capabilities =
            serde_json::from_value(value).map_err(|e| bad(e.to_string()))?;
        for p in &caps.probes {
            if DType::from_name(&p.dtype).is_none() {
                return Err(bad(format!(
                    "probe `{}` has unknown dtype `{}`",
                    p.op, p.dtype
                )));
            }
        }
        caps.normalize();
        Ok(caps)
    }

    /// The file's text (pretty JSON, stable order).
    pub fn to_json(&self) -> Result<String> {
        let mut text = serde_json::to_string_pretty(self)
            .map_err(|e| DeviceError::Runtime(format!("cannot encode the capability file: {e}")))?;
        text.push('\n');
        Ok(text)
    }

    /// Where `anetrain doctor --probe` writes the file for `chip` on `macos`, and where
    /// training and generation on the ANE look for it:
    /// `~/.anetrain/capabilities-<chip>-<macos>.json`, the names made file-name safe.
    pub fn default_path(chip: &str, macos: &str) -> Result<PathBuf> {
        let home = std::env::var_os("HOME").ok_or_else(|| {
            DeviceError::Runtime(
                "HOME is not set, so there is no default capability file; pass                  --capabilities FILE"
                    .into(),
            )
        })?;
        Ok(PathBuf::from(home).join(".anetrain").join(format!(
            "capabilities-{}-{}.json",
            slug(chip),
            slug(macos)
        )))
    }

    /// Reads the capability file at `path`.
    pub fn read(path: &Path) -> Result<Capabilities> {
        let text = fs::read_to_string(path).map_err(|e| {
            DeviceError::Runtime(format!(
                "cannot read capability file `{}`: {e}",
                path.display()
            ))
        })?;
        Capabilities::from_json(&text, &path.display().to_string())
    }

    /// Writes the capability file at `path` atomically (a temporary file, then a rename), so a
    /// probe killed mid-write never leaves half a file.
    pub fn write(&self, path: &Path) -> Result<()> {
        let io = |e: std::io::Error| {
            DeviceError::Runtime(format!(
                "cannot write capability file `{}`: {e}",
                path.display()
            ))
        };
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(".tmp");
        fs::write(&tmp, self.to_json()?).map_err(io)?;
        fs::rename(&tmp, path).map_err(io)
    }

    /// Adds `probe`, replacing an earlier result for the same (op, dtype, width).
    pub fn record(&mut self, probe: Probe) {
        match self.probes.iter_mut().find(|p| p.key() == probe.key()) {
            Some(existing) => *existing = probe,
            None => self.probes.push(probe),
        }
        self.normalize();
    }

    /// Adds every probe of `other` (newer results win). Refuses a file from another chip or
    /// macOS version, whose results do not describe this machine.
    pub fn merge(&mut self, other: &Capabilities) -> Result<()> {
        if other.chip != self.chip || other.macos != self.macos {
            return Err(DeviceError::Runtime(format!(
                "cannot merge capabilities of {} on macOS `{}` into those of {} on macOS `{}`; \
                 probe results are only valid for the machine and OS they ran on",
                other.chip, other.macos, self.chip, self.macos
            )));
        }
        for probe in &other.probes {
            self.record(probe.clone());
        }
        Ok(())
    }

    /// The result for (op, dtype, width), if probed.
    pub fn probe(&self, op: &str, dtype: DType, width: usize) -> Option<&Probe> {
        self.probes
            .iter()
            .find(|p| p.key() == (op, dtype.name(), width))
    }

    /// The catalog rules these results settle, for the constraint checker
    /// (`anetrain_mil::check::check_with`). `rule_of` names the rule a probe's kernel breaks
    /// (`None` for a baseline). A probe that compiled, ran and matched the CPU shows its rule
    /// does not hold on this chip; any other outcome shows it does. Fails on a chip name or a
    /// rule id this build does not know.
    pub fn measured_rules(
        &self,
        rule_of: impl Fn(&Probe) -> Option<&'static str>,
    ) -> Result<MeasuredRules> {
        let mut measured = MeasuredRules::new(Chip::from_name(&self.chip)?);
        for probe in &self.probes {
            if let Some(rule) = rule_of(probe) {
                measured.observe(rule, !(probe.compiled && probe.ran))?;
            }
        }
        Ok(measured)
    }

    /// Sorts probes and keeps the last result of each (op, dtype, width).
    fn normalize(&mut self) {
        // A stable sort keeps duplicates in file order, so the later one survives the dedup.
        self.probes.sort_by(|a, b| a.key().cmp(&b.key()));
        let mut kept: Vec<Probe> = Vec::with_capacity(self.probes.len());
        for p in self.probes.drain(..) {
            match kept.last_mut() {
                Some(last) if last.key() == p.key() => *last = p,
                _ => kept.push(p),
            }
        }
        self.probes = kept;
    }
}

/// `Version 15.3 (Build 24D60)` → `Version-15.3-Build-24D60`.
fn slug(text: &str) -> String {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '.'))
        .filter(|part| !part.is_empty())
        .collect::<Vec<_>>()
        .join("-")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_keep_only_safe_characters() {
        assert_eq!(
            slug("Version 15.3 (Build 24D60)"),
            "Version-15.3-Build-24D60"
        );
        assert_eq!(slug("H16G"), "H16G");
        assert_eq!(slug("a/../b"), "a-..-b");
    }
    use anetrain_mil::check::Applies;

    fn probe(op: &str, compiled: bool, ran: bool) -> Probe {
        Probe {
            op: op.into(),
            dtype: "fp16".into(),
            width: 64,
            compiled,
            ran,
            error: None,
        }
    }

    #[test]
    fn only_probes_that_compiled_and_ran_refute_their_rule() {
        let mut caps = Capabilities::new("H16G", "15.3");
        caps.record(probe("gelu", true, true));
        caps.record(probe("exp", true, false));
        caps.record(probe("concat", false, false));
        caps.record(probe("baseline", false, false));
        let rule_of = |p: &Probe| match p.op.as_str() {
            "gelu" => Some("gelu"),
            "exp" => Some("transcendentals"),
            "concat" => Some("concat"),
            _ => None,
        };
        let m = caps.measured_rules(rule_of).unwrap();
        assert_eq!(m.chip(), Chip::M4);
        assert_eq!(
            m.iter().collect::<Vec<_>>(),
            [
                ("concat", Applies::Yes),
                ("gelu", Applies::No),
                ("transcendentals", Applies::Yes),
            ]
        );
    }

    #[test]
    fn an_unknown_chip_or_rule_is_an_error() {
        let caps = Capabilities::new("Z9", "15.3");
        let e = caps.measured_rules(|_| None).unwrap_err().to_string();
        assert!(e.contains("unknown chip `Z9`"), "{e}");
        let mut caps = Capabilities::new("H16G", "15.3");
        caps.record(probe("gelu", true, true));
        assert!(caps.measured_rules(|_| Some("no-such-rule")).is_err());
    }
}
