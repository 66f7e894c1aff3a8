//! The ANE device on platforms without one: it cannot be constructed, and every constructor
//! says why and what to use instead.

use super::capabilities::Capabilities;
use super::constraints::ConstraintCheck;
use super::info::AneInfo;
use super::surface_layout::SurfacePolicy;
use crate::{Device, DeviceError, Kernel, Result};
use anetrain_mil::{Program, WeightFiles};

const UNAVAILABLE: &str = "the Apple Neural Engine is only available on macOS on Apple silicon \
                           (aarch64-apple-darwin); use --device cpu";

/// The ANE device. Uninhabited here: no value of it can exist off Apple silicon, so code that
/// holds one compiles everywhere and is statically dead here.
#[derive(Debug)]
pub enum AneDevice {}

impl AneDevice {
    /// Always [`DeviceError::Unavailable`] on this platform.
    pub fn new() -> Result<AneDevice> {
        Err(DeviceError::Unavailable(UNAVAILABLE.into()))
    }

    /// Always [`DeviceError::Unavailable`] on this platform.
    pub fn probe() -> Result<AneDevice> {
        AneDevice::new()
    }

    /// What the framework reports (unreachable here).
    pub fn info(&self) -> &AneInfo {
        match *self {}
    }

    /// Replaces the surface rules (unreachable here).
    pub fn with_surface_policy(self, _policy: SurfacePolicy) -> AneDevice {
        match self {}
    }

    /// Replaces the constraint check (unreachable here).
    pub fn with_constraint_check(self, _constraints: ConstraintCheck) -> AneDevice {
        match self {}
    }

    /// Records measured capabilities (unreachable here).
    pub fn with_capabilities(self, _capabilities: Capabilities) -> AneDevice {
        match self {}
    }
}

impl Device for AneDevice {
    fn name(&self) -> String {
        match *self {}
    }

    fn compile(&self, _program: &Program, _weights: &WeightFiles) -> Result<Box<dyn Kernel>> {
        match *self {}
    }

    fn compile_budget(&self) -> Option<&'static crate::CompileBudget> {
        match *self {}
    }

    fn capabilities(&self) -> Option<&Capabilities> {
        match *self {}
    }

    fn surface_policy(&self) -> Option<SurfacePolicy> {
        match *self {}
    }
}
