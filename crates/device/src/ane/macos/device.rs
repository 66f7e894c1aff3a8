//! The ANE as a [`Device`]: compiles through the cache and the compile budget.

use super::kernel::AneKernel;
use super::model::CompiledModel;
use super::runtime::AneRuntime;
use crate::ane::budget::CompileBudget;
use crate::ane::cache::{instance_id, stamped_text, KernelCache};
use crate::ane::capabilities::Capabilities;
use crate::ane::constraints::ConstraintCheck;
use crate::ane::info::AneInfo;
use crate::ane::port_order::kernel_ports;
use crate::ane::self_test::SelfTest;
use crate::ane::surface_layout::{SurfaceLayout, SurfacePolicy};
use crate::{Device, DeviceError, Kernel, Result};
use anetrain_mil::{print_program, validate, Program, WeightFiles};
use std::sync::{Arc, Mutex, PoisonError};

/// The Apple Neural Engine, through `AppleNeuralEngine.framework`.
#[derive(Debug)]
pub struct AneDevice {
    runtime: AneRuntime,
    info: AneInfo,
    policy: SurfacePolicy,
    constraints: ConstraintCheck,
    capabilities: Option<Capabilities>,
    budget: &'static CompileBudget,
    /// Compiled models by (MIL text, weights), so that nothing compiles twice; held until the
    /// device is dropped.
    cache: Mutex<KernelCache<Arc<CompiledModel>>>,
}

impl AneDevice {
    /// Loads the framework. Fails with [`DeviceError::Unavailable`] naming what is missing.
    pub fn new() -> Result<AneDevice> {
        let runtime = AneRuntime::load()?;
        let info = runtime.info();
        if info.has_ane == Some(false) {
            return Err(DeviceError::Unavailable(format!(
                "this Mac reports no Neural Engine (_ANEDeviceInfo hasANE is NO on macOS `{}`); \
                 use --device cpu",
                info.macos
            )));
        }
        Ok(AneDevice {
            constraints: ConstraintCheck::for_chip(info.chip()),
            capabilities: None,
            runtime,
            info,
            policy: SurfacePolicy::default(),
            budget: CompileBudget::process(),
            cache: Mutex::new(KernelCache::new()),
        })
    }

    /// Loads the framework and runs the self-test kernel; what `--device auto` uses. The error
    /// says why the ANE is not used.
    pub fn probe() -> Result<AneDevice> {
        let device = AneDevice::new()?;
        SelfTest::new()?.run(&device).map_err(|e| {
            DeviceError::Unavailable(format!("the ANE self-test kernel failed: {e}"))
        })?;
        Ok(device)
    }

    /// What the framework reports about this machine's ANE.
    pub fn info(&self) -> &AneInfo {
        &self.info
    }

    /// Replaces the surface rules, e.g. relaxed for a chip whose capability file shows
    /// narrower widths work.
    pub fn with_surface_policy(mut self, policy: SurfacePolicy) -> AneDevice {
        self.policy = policy;
        self
    }

    /// Replaces the constraint check run before every compile, e.g. with the rules a
    /// capability file measured, or off for probes that break rules on purpose.
    pub fn with_constraint_check(mut self, constraints: ConstraintCheck) -> AneDevice {
        self.constraints = constraints;
        self
    }

    /// Records what a probe run measured on this machine, so kernels are generated in the
    /// forms it shows working ([`Device::capabilities`]).
    pub fn with_capabilities(mut self, capabilities: Capabilities) -> AneDevice {
        self.capabilities = Some(capabilities);
        self
    }

    /// The loaded framework.
    pub fn runtime(&self) -> &AneRuntime {
        &self.runtime
    }
}

impl Device for AneDevice {
    fn name(&self) -> String {
        format!("ane ({})", self.info.chip())
    }

    fn compile_budget(&self) -> Option<&'static CompileBudget> {
        Some(self.budget)
    }

    fn capabilities(&self) -> Option<&Capabilities> {
        self.capabilities.as_ref()
    }

    fn surface_policy(&self) -> Option<SurfacePolicy> {
        Some(self.policy)
    }

    fn compile(&self, program: &Program, weights: &WeightFiles) -> Result<Box<dyn Kernel>> {
        validate(program)?;
        // Rules and shapes are checked before compiling, so a known rejection costs no budget.
        self.constraints.check(program)?;
        let (inputs, outputs) = kernel_ports(program)?;
        let layout = SurfaceLayout::plan(&inputs, &outputs, &self.policy)?;
        let (key, text) = stamped_text(program, weights, &instance_id(), print_program);
        let model = self
            .cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get_or_try_insert(key, || {
                CompiledModel::build(&self.runtime, &text, weights, self.budget).map(Arc::new)
            })?;
        let kernel = AneKernel::new(&self.runtime, model, inputs, outputs, &layout)?;
        Ok(Box::new(kernel))
    }
}
