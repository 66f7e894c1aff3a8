//! `--device`: one flag, one help text and one list of names for every command; the names and
//! what they open live in [`DeviceChoice`].

use anetrain_model::device_choice::DeviceChoice;
use clap::Args;

/// The `--device` flag, flattened into every command that runs kernels.
#[derive(Args, Clone, Copy, Debug)]
pub struct DeviceArgs {
    /// Where the model or kernels run.
    #[arg(long, value_enum, default_value_t = DeviceChoice::Auto)]
    pub device: DeviceChoice,
}
