//! What the machine says about its Neural Engine, for `anetrain doctor` and device names.

use std::fmt;

/// `_ANEDeviceInfo`'s answers plus the OS version and which optional classes exist. Every
/// field the framework did not answer is `None`: the selectors are private and drift between
/// releases.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AneInfo {
    /// `NSProcessInfo`'s `operatingSystemVersionString`, e.g. `Version 15.3 (Build 24D60)`.
    pub macos: String,
    /// `+hasANE`.
    pub has_ane: Option<bool>,
    /// `+aneSubType`, e.g. `H16G` on an M4.
    pub sub_type: Option<String>,
    /// `+aneArchitectureType`.
    pub architecture: Option<String>,
    /// `+numANECores`.
    pub cores: Option<u64>,
    /// `+productName`.
    pub product: Option<String>,
    /// Whether `_ANEClient` exists (AB's direct-evaluation path).
    pub has_client: bool,
    /// Whether `_ANEPerformanceStats` exists (counters need entitlements on most systems).
    pub has_performance_stats: bool,
}

impl AneInfo {
    /// The chip name for device names and capability files: the sub-type, else `unknown`.
    pub fn chip(&self) -> &str {
        self.sub_type.as_deref().unwrap_or("unknown")
    }
}

impl fmt::Display for AneInfo {
    /// One `key: value` line per fact, unknown values shown as `?`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fn show<T: fmt::Display>(v: &Option<T>) -> String {
            v.as_ref().map_or_else(|| "?".to_string(), T::to_string)
        }
        writeln!(f, "macOS: {}", self.macos)?;
        writeln!(f, "has ANE: {}", show(&self.has_ane))?;
        writeln!(f, "ANE sub-type: {}", show(&self.sub_type))?;
        writeln!(f, "ANE architecture: {}", show(&self.architecture))?;
        writeln!(f, "ANE cores: {}", show(&self.cores))?;
        writeln!(f, "product: {}", show(&self.product))?;
        writeln!(f, "_ANEClient: {}", self.has_client)?;
        write!(f, "_ANEPerformanceStats: {}", self.has_performance_stats)
    }
}
