//! Device names to devices.
//!
//! Until the device-choice type lands in the libraries, this mirrors the CLI's `--device`
//! names (`cpu`, `cpu-f16`, `ane`, `auto`).

use crate::status::{Failure, Outcome, ANETRAIN_ERR_INVALID_ARGUMENT};
use anetrain_device::{AneDevice, CpuDevice, Device, Precision};

/// The device called `name`.
pub fn open_device(name: &str) -> Outcome<Box<dyn Device>> {
    Ok(match name {
        "cpu" => Box::new(CpuDevice::new(Precision::F32)),
        "cpu-f16" => Box::new(CpuDevice::new(Precision::F16)),
        "ane" => Box::new(AneDevice::probe()?),
        "auto" => match AneDevice::probe() {
            Ok(ane) => Box::new(ane),
            Err(_) => Box::new(CpuDevice::new(Precision::F32)),
        },
        other => {
            return Err(Failure::new(
                ANETRAIN_ERR_INVALID_ARGUMENT,
                format!("unknown device `{other}`; choose auto, cpu, cpu-f16 or ane"),
            ))
        }
    })
}
