//! `--device`: one flag, one help text and one list of names for every command; the names and
//! what they open live in [`DeviceChoice`].

use anetrain_model::device_choice::DeviceChoice;
use clap::Args;
use std::path::{Path, PathBuf};

/// The `--device` flag, flattened into every command that runs kernels.
#[derive(Args, Clone, Copy, Debug)]
pub struct DeviceArgs {
    /// Where the model or kernels run.
    #[arg(long, value_enum, default_value_t = DeviceChoice::Auto)]
    pub device: DeviceChoice,
}

/// `--capabilities`, for the commands that compile a model's kernels (train, eval, generate).
#[derive(Args, Clone, Debug, Default)]
pub struct CapabilityArgs {
    /// On the ANE, the capability file of `anetrain doctor --probe` that decides the kernel
    /// forms [default: the one doctor wrote for this machine, when it exists]; ignored on the
    /// CPU devices, which run every form alike.
    #[arg(long, value_name = "FILE")]
    capabilities: Option<PathBuf>,
}

impl CapabilityArgs {
    /// The file given, if any.
    pub fn path(&self) -> Option<&Path> {
        self.capabilities.as_deref()
    }
}
