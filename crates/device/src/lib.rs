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
mod shared;
mod spec;

pub use ane::budget::CompileBudget;
use ane::capabilities::Capabilities;
pub use ane::AneDevice;
pub use ane::SurfacePolicy;
pub use cpu::{CpuDevice, Precision};
pub use error::{DeviceError, Result};
pub use shared::SharedMatrix;
pub use spec::TensorSpec;

use anetrain_mil::{Program, WeightFiles};
use std::ops::Range;

/// Something that can compile and run MIL programs.
pub trait Device {
    /// A short human-readable name, e.g. `cpu (f32)` or `ane (H16G)`.
    fn name(&self) -> String;

    /// Compiles the `main` function of `program`, resolving its BLOBFILE constants from `weights`.
    fn compile(&self, program: &Program, weights: &WeightFiles) -> Result<Box<dyn Kernel>>;

    /// The per-process compile budget this device charges (the ANE's ~119 compiles,
    /// ane-reference §1.10); `None` for devices that compile without limit.
    fn compile_budget(&self) -> Option<&'static CompileBudget> {
        None
    }

    /// What a probe run measured on this device ([`ane::capabilities`]), which decides the
    /// kernel forms compiled for it; `None` for devices that run every form alike.
    fn capabilities(&self) -> Option<&Capabilities> {
        None
    }

    /// The shape rules this device's ports must follow ([`SurfacePolicy`]: width multiples and
    /// minimum buffer sizes, the ANE's), so callers size kernels to fit; `None` for devices
    /// that run any shape.
    fn surface_policy(&self) -> Option<SurfacePolicy> {
        None
    }

    /// `count` kernels of one program, each with its own buffers (one per layer): forks of a
    /// single compile, or a compile each where the device's kernels cannot fork, so callers
    /// never spend compile budget on a copy a fork could give.
    fn compile_copies(
        &self,
        program: &Program,
        weights: &WeightFiles,
        count: usize,
    ) -> Result<Vec<Box<dyn Kernel>>> {
        let mut kernels: Vec<Box<dyn Kernel>> = Vec::with_capacity(count);
        if count == 0 {
            return Ok(kernels);
        }
        kernels.push(self.compile(program, weights)?);
        for _ in 1..count {
            let copy = match kernels[0].fork() {
                Err(DeviceError::Unavailable(_)) => self.compile(program, weights)?,
                other => other?,
            };
            kernels.push(copy);
        }
        Ok(kernels)
    }
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

    /// Makes region `channels × columns` of `[1, C, 1, S]` input `index` read `matrix` in
    /// place, without a copy, until [`Kernel::unshare_inputs`] or a write into the region.
    /// `Unavailable` where the device needs its own copy (fp16 surfaces, fp16 rounding, a
    /// region the program does not read as one piece): stage it with a write instead.
    fn share_input_region(
        &mut self,
        index: usize,
        channels: Range<usize>,
        columns: Range<usize>,
        matrix: &SharedMatrix,
    ) -> Result<()> {
        let _ = (index, channels, columns, matrix);
        Err(DeviceError::Unavailable(
            "this device reads inputs only from its own buffers".into(),
        ))
    }

    /// Stops reading every region shared by [`Kernel::share_input_region`] (they read as
    /// zeros until shared or written again), so the sharer may change the matrices.
    fn unshare_inputs(&mut self) {}

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
