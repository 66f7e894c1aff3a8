//! Devices that run MIL kernels.
//!
//! A [`Device`] compiles a MIL program plus its weight files into a [`Kernel`]. Callers write
//! inputs and read outputs as `f32` slices in the program's declared shapes (the ANE layout
//! `[1, C, 1, S]`, channel-major, for training kernels); each device converts to its own
//! storage inside (fp16 IOSurfaces on the ANE, fp32 or fp16-rounded values on the CPU). The
//! same program can therefore run on two devices and be compared element by element.

pub mod ane;
pub mod compare;
pub mod cpu;
mod error;
pub mod host;

pub use ane::AneDevice;
pub use cpu::{CpuDevice, Precision};
pub use error::{DeviceError, Result};

use anetrain_mil::{Program, TensorType, WeightFiles};
use std::ops::Range;

/// A named, typed kernel input or output.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorSpec {
    pub name: String,
    pub ty: TensorType,
}

impl TensorSpec {
    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.ty.numel()
    }

    /// Elements per channel (product of the axes after axis 1) of a rank-4 `[1, C, H, W]` tensor.
    pub fn channel_stride(&self) -> Result<usize> {
        match self.ty.shape.as_slice() {
            [1, _, h, w] => Ok(h * w),
            _ => Err(DeviceError::Layout(format!(
                "`{}` has shape {:?}; channel access needs [1, C, H, W]",
                self.name, self.ty.shape
            ))),
        }
    }
}

/// Something that can compile and run MIL programs.
pub trait Device {
    /// A short human-readable name, e.g. `cpu (f32)` or `ane (H16G)`.
    fn name(&self) -> String;

    /// Compiles the `main` function of `program`, resolving its BLOBFILE constants from `weights`.
    fn compile(&self, program: &Program, weights: &WeightFiles) -> Result<Box<dyn Kernel>>;
}

/// A compiled program with device-resident input and output buffers.
///
/// Inputs keep their contents between runs, so a kernel whose weights are packed into its input
/// rewrites only the activation region each step ([`Kernel::write_input_region`]).
pub trait Kernel: Send {
    /// Inputs in the order of the function signature.
    fn inputs(&self) -> &[TensorSpec];

    /// Outputs in the order of the function's return list.
    fn outputs(&self) -> &[TensorSpec];

    /// Replaces the whole of input `index` with `data` (row-major in the declared shape).
    fn write_input(&mut self, index: usize, data: &[f32]) -> Result<()>;

    /// Writes `data`, laid out `[channels.len()][columns.len()]`, into channels `channels` and
    /// spatial columns `columns` of a `[1, C, 1, S]` input, leaving the rest untouched.
    fn write_input_region(
        &mut self,
        index: usize,
        channels: Range<usize>,
        columns: Range<usize>,
        data: &[f32],
    ) -> Result<()>;

    /// Evaluates the program on the current inputs.
    fn run(&mut self) -> Result<()>;

    /// Copies all of output `index` into `out` (row-major in the declared shape).
    fn read_output(&self, index: usize, out: &mut [f32]) -> Result<()>;

    /// Copies channels `channels` of a `[1, C, H, W]` output into `out`, for kernels that
    /// concatenate several results along channels.
    fn read_output_channels(
        &self,
        index: usize,
        channels: Range<usize>,
        out: &mut [f32],
    ) -> Result<()>;

    /// A new kernel for the same compiled program with its own input and output buffers, so
    /// one compile serves many weight sets (one per layer, each staged once per update).
    fn fork(&self) -> Result<Box<dyn Kernel>> {
        Err(DeviceError::Unavailable(
            "this device cannot share a compiled program between buffer sets".into(),
        ))
    }

    /// Index of the input named `name`.
    fn input_index(&self, name: &str) -> Result<usize> {
        self.inputs()
            .iter()
            .position(|s| s.name == name)
            .ok_or_else(|| DeviceError::UnknownPort(name.to_string()))
    }

    /// Index of the output named `name`.
    fn output_index(&self, name: &str) -> Result<usize> {
        self.outputs()
            .iter()
            .position(|s| s.name == name)
            .ok_or_else(|| DeviceError::UnknownPort(name.to_string()))
    }
}
