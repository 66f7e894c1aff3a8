//! `--device`: the one place a device name becomes a [`Device`], with a sentence saying what
//! was chosen and why, so every command prints the same reason.

use anetrain_device::{AneDevice, CpuDevice, Device, Precision};
use anyhow::{bail, Result};

/// The spellings `--device` accepts, for help texts and errors.
pub const DEVICE_NAMES: &str = "auto, cpu, cpu-f16 or ane";

/// Builds the device named `name` (`auto`, `cpu`, `cpu-f16`, `ane`) and says why it was chosen.
///
/// `auto` takes the ANE only when the framework loads *and* the self-test kernel gives the
/// right numbers ([`AneDevice::probe`]); otherwise it falls back to the fp32 CPU interpreter
/// and the reason carries the probe's error. `ane` runs the same probe and fails with its error,
/// so a device that computes wrong results is never used silently.
pub fn select_device(name: &str) -> Result<(Box<dyn Device>, String)> {
    match name {
        "cpu" => Ok((
            Box::new(CpuDevice::new(Precision::F32)),
            "cpu: MIL kernels interpreted in fp32".into(),
        )),
        "cpu-f16" => Ok((
            Box::new(CpuDevice::new(Precision::F16)),
            "cpu-f16: MIL kernels interpreted with every op rounded to fp16 like the ANE".into(),
        )),
        "ane" => match AneDevice::probe() {
            Ok(ane) => {
                let why = format!("ane: the Apple Neural Engine ({})", ane.info().chip());
                Ok((Box::new(ane), why))
            }
            Err(e) => bail!("--device ane is not usable here: {e}"),
        },
        "auto" => match AneDevice::probe() {
            Ok(ane) => {
                let why = format!(
                    "auto: the Apple Neural Engine ({}): the framework loaded and the self-test \
                     kernel passed",
                    ane.info().chip()
                );
                Ok((Box::new(ane), why))
            }
            Err(e) => Ok((
                Box::new(CpuDevice::new(Precision::F32)),
                format!("auto: cpu (fp32 MIL kernels), because {e}"),
            )),
        },
        other => bail!("unknown --device `{other}`; choose {DEVICE_NAMES}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_names_pick_the_matching_precision() {
        let (device, why) = select_device("cpu").unwrap();
        assert_eq!(device.name(), "cpu (f32)");
        assert!(why.starts_with("cpu:"));
        let (device, _) = select_device("cpu-f16").unwrap();
        assert_eq!(device.name(), "cpu (f16)");
    }

    #[test]
    fn unknown_name_lists_the_choices() {
        let e = select_device("gpu").err().unwrap().to_string();
        assert!(e.contains("`gpu`") && e.contains(DEVICE_NAMES), "{e}");
    }

    #[cfg(not(all(target_os = "macos", target_arch = "aarch64")))]
    #[test]
    fn off_apple_silicon_auto_falls_back_to_the_cpu_and_ane_is_an_error() {
        let (device, why) = select_device("auto").unwrap();
        assert_eq!(device.name(), "cpu (f32)");
        assert!(why.contains("only available on macOS"), "{why}");
        let e = select_device("ane").err().unwrap().to_string();
        assert!(e.contains("--device ane is not usable here"), "{e}");
        assert!(e.contains("use --device cpu"), "{e}");
    }
}
