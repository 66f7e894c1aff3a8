//! Where a model runs, as a user names it (`--device`, the C and Python APIs): one list of
//! names, one help text per name, and the one place a name becomes a [`Device`] or an
//! [`Engine`], with a sentence saying what was chosen and why.
//!
//! On the ANE the capability file of `anetrain doctor --probe` (or one named with
//! `--capabilities`) decides the kernel forms ([`KernelForms`]) and the rules the constraint
//! check holds programs to; CPU devices run every form alike and ignore it.

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use anetrain_device::ane::capabilities::Capabilities;
use anetrain_device::ane::ConstraintCheck;
use anetrain_device::{AneDevice, CpuDevice, Device, Precision};

use crate::config::ModelConfig;
use crate::engine::{DeviceEngine, Engine, ReferenceEngine};
use crate::error::{ModelError, Result};
use crate::kernels::KernelForms;
use crate::params::Params;
use crate::probes::measured_rules;

/// A device name. With the `clap` feature it is a `clap::ValueEnum`, whose help lists each
/// variant's doc comment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum DeviceChoice {
    /// The Apple Neural Engine when it loads and passes its self-test, else the fp32 CPU.
    #[default]
    Auto,
    /// The MIL kernels interpreted on the CPU in fp32.
    Cpu,
    /// The MIL kernels on the CPU with every op rounded to fp16, like the ANE.
    CpuF16,
    /// The Apple Neural Engine; an error where it is not usable.
    Ane,
    /// The plain-Rust fp32 model without kernels (generation and kernel commands use the fp32
    /// CPU interpreter, the kernels' reference semantics).
    Reference,
}

impl DeviceChoice {
    /// Every choice, in the order help texts list them.
    pub const ALL: [DeviceChoice; 5] = [
        DeviceChoice::Auto,
        DeviceChoice::Cpu,
        DeviceChoice::CpuF16,
        DeviceChoice::Ane,
        DeviceChoice::Reference,
    ];

    /// The spelling users type, e.g. `cpu-f16`.
    pub fn name(self) -> &'static str {
        match self {
            DeviceChoice::Auto => "auto",
            DeviceChoice::Cpu => "cpu",
            DeviceChoice::CpuF16 => "cpu-f16",
            DeviceChoice::Ane => "ane",
            DeviceChoice::Reference => "reference",
        }
    }

    /// The device that runs MIL kernels for this choice, and why it was chosen.
    ///
    /// `auto` takes the ANE only when the framework loads *and* the self-test kernel gives the
    /// right numbers ([`AneDevice::probe`]); otherwise it falls back to the fp32 CPU and the
    /// reason carries the probe's error. `ane` runs the same probe and fails with its error, so
    /// a device that computes wrong results is never used silently.
    pub fn device(self) -> Result<(Box<dyn Device>, String)> {
        self.device_with(None)
    }

    /// [`DeviceChoice::device`], with the ANE given the capability file at `capabilities`
    /// (it must exist), or by default the one `anetrain doctor --probe` wrote for this machine
    /// when there is one. A file that leaves a kernel without a working form is an error
    /// before anything compiles; for `ane` with an explicit file, before the ANE is opened.
    /// CPU devices, `auto` falling back to the CPU included, ignore the file.
    pub fn device_with(self, capabilities: Option<&Path>) -> Result<(Box<dyn Device>, String)> {
        if let (DeviceChoice::Ane, Some(path)) = (self, capabilities) {
            read_capabilities(path)?;
        }
        let cpu = |precision| Box::new(CpuDevice::new(precision)) as Box<dyn Device>;
        Ok(match self {
            DeviceChoice::Cpu => (
                cpu(Precision::F32),
                "cpu: MIL kernels interpreted in fp32".into(),
            ),
            DeviceChoice::CpuF16 => (
                cpu(Precision::F16),
                "cpu-f16: MIL kernels interpreted with every op rounded to fp16 like the ANE"
                    .into(),
            ),
            DeviceChoice::Reference => (
                cpu(Precision::F32),
                "reference: MIL kernels interpreted in fp32 (their reference semantics)".into(),
            ),
            DeviceChoice::Ane => match AneDevice::probe() {
                Ok(ane) => {
                    let why = format!("ane: the Apple Neural Engine ({})", ane.info().chip());
                    let (ane, why) = with_capabilities(ane, capabilities, why)?;
                    (Box::new(ane), why)
                }
                Err(source) => {
                    return Err(ModelError::DeviceUnavailable {
                        device: self.name(),
                        source,
                    })
                }
            },
            DeviceChoice::Auto => match AneDevice::probe() {
                Ok(ane) => {
                    let why = format!(
                        "auto: the Apple Neural Engine ({}): the framework loaded and the \
                         self-test kernel passed",
                        ane.info().chip()
                    );
                    let (ane, why) = with_capabilities(ane, capabilities, why)?;
                    (Box::new(ane), why)
                }
                Err(e) => (
                    cpu(Precision::F32),
                    format!("auto: cpu (fp32 MIL kernels), because {e}"),
                ),
            },
        })
    }

    /// The training/evaluation engine for sequences of `seq` tokens, holding `params` staged,
    /// and why it was chosen. `reference` is the plain-Rust model; the others run kernels.
    pub fn engine(
        self,
        config: &ModelConfig,
        seq: usize,
        params: &Params,
    ) -> Result<(Box<dyn Engine>, String)> {
        self.engine_with(config, seq, params, None)
    }

    /// [`DeviceChoice::engine`] with the capability file of [`DeviceChoice::device_with`].
    pub fn engine_with(
        self,
        config: &ModelConfig,
        seq: usize,
        params: &Params,
        capabilities: Option<&Path>,
    ) -> Result<(Box<dyn Engine>, String)> {
        if self == DeviceChoice::Reference {
            return Ok((
                Box::new(ReferenceEngine::new(config)),
                "reference: the plain-Rust fp32 model, no kernels".into(),
            ));
        }
        let (device, why) = self.device_with(capabilities)?;
        Ok((
            Box::new(DeviceEngine::new(config, device, seq, params)?),
            why,
        ))
    }
}

/// Reads a capability file and checks that it leaves every kernel a form, so a file that
/// does not fails before anything compiles.
fn read_capabilities(path: &Path) -> Result<Capabilities> {
    let caps = Capabilities::read(path).map_err(|source| ModelError::DeviceUnavailable {
        device: DeviceChoice::Ane.name(),
        source,
    })?;
    KernelForms::from_capabilities(&caps)?;
    Ok(caps)
}

/// `ane` holding the capability file at `path`, or else the one doctor wrote for this machine
/// when there is one, with `why` saying which file and which forms were used.
// Off Apple silicon `AneDevice` is uninhabited, so this is never called there.
#[cfg_attr(
    not(all(target_os = "macos", target_arch = "aarch64")),
    allow(unreachable_code, unused_variables)
)]
fn with_capabilities(
    ane: AneDevice,
    path: Option<&Path>,
    why: String,
) -> Result<(AneDevice, String)> {
    let info = ane.info();
    let default = Capabilities::default_path(info.chip(), &info.macos).ok();
    let Some(path) = path
        .map(Path::to_path_buf)
        .or(default.filter(|p| p.is_file()))
    else {
        return Ok((ane, why));
    };
    let caps = read_capabilities(&path)?;
    if (caps.chip.as_str(), caps.macos.as_str()) != (info.chip(), info.macos.as_str()) {
        return Err(ModelError::Options(format!(
            "the capability file {} was measured on {} with macOS `{}`, but this is {} with \
             macOS `{}`; run `anetrain doctor --probe` on this machine, or pass its own file \
             with --capabilities",
            path.display(),
            caps.chip,
            caps.macos,
            info.chip(),
            info.macos
        )));
    }
    let forms = KernelForms::from_capabilities(&caps)?;
    let (ane, rules) = match measured_rules(&caps) {
        Ok(measured) => (
            ane.with_constraint_check(ConstraintCheck::Measured(measured)),
            "its measured rules".to_string(),
        ),
        Err(e) => (ane, format!("the catalog's rules ({e})")),
    };
    let why = format!(
        "{why}; from the capability file {}: kernel forms {}; constraint check with {rules}",
        path.display(),
        forms.describe().join(", ")
    );
    Ok((ane.with_capabilities(caps), why))
}

impl fmt::Display for DeviceChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for DeviceChoice {
    type Err = ModelError;

    fn from_str(name: &str) -> Result<Self> {
        DeviceChoice::ALL
            .into_iter()
            .find(|c| c.name() == name)
            .ok_or_else(|| {
                let names: Vec<&str> = DeviceChoice::ALL.iter().map(|c| c.name()).collect();
                ModelError::Input(format!(
                    "unknown device `{name}`; choose one of {}",
                    names.join(", ")
                ))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_back_to_their_choice() {
        for choice in DeviceChoice::ALL {
            assert_eq!(choice.name().parse::<DeviceChoice>().unwrap(), choice);
        }
        let e = "gpu".parse::<DeviceChoice>().unwrap_err().to_string();
        assert!(
            e.contains("`gpu`") && e.contains("cpu-f16, ane, reference"),
            "{e}"
        );
    }

    #[test]
    fn cpu_names_pick_the_matching_precision() {
        let (device, why) = DeviceChoice::Cpu.device().unwrap();
        assert_eq!(device.name(), "cpu (f32)");
        assert!(why.starts_with("cpu:"));
        let (device, _) = DeviceChoice::CpuF16.device().unwrap();
        assert_eq!(device.name(), "cpu (f16)");
        let (device, _) = DeviceChoice::Reference.device().unwrap();
        assert_eq!(device.name(), "cpu (f32)");
    }

    #[cfg(not(all(target_os = "macos", target_arch = "aarch64")))]
    #[test]
    fn off_apple_silicon_auto_falls_back_to_the_cpu_and_ane_is_an_error() {
        let (device, why) = DeviceChoice::Auto.device().unwrap();
        assert_eq!(device.name(), "cpu (f32)");
        assert!(why.contains("only available on macOS"), "{why}");
        let e = DeviceChoice::Ane.device().err().unwrap().to_string();
        assert!(e.contains("device `ane` is not usable here"), "{e}");
        assert!(e.contains("use --device cpu"), "{e}");
    }
}
