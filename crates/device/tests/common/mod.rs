//! Injected faults shared by the device tests: a kernel that forwards to a real one but for
//! the fault it is given.

#![allow(dead_code)]

use anetrain_device::{DeviceError, Kernel, Result, TensorSpec};
use std::ops::Range;

/// A fault of [`Faulty`].
#[derive(Clone, Copy, Debug)]
pub enum Fault {
    /// Adds `delta` to element `at` of output 0 on every read: an error of known size.
    Perturb { at: usize, delta: f32 },
    /// `fork` fails with `DeviceError::Unavailable`, like a device that cannot share a
    /// compiled program.
    CannotFork,
    /// `fork` fails with a runtime error.
    ForkFails,
}

/// `inner` with `fault` injected.
pub struct Faulty {
    pub inner: Box<dyn Kernel>,
    pub fault: Fault,
}

impl Kernel for Faulty {
    fn inputs(&self) -> &[TensorSpec] {
        self.inner.inputs()
    }

    fn outputs(&self) -> &[TensorSpec] {
        self.inner.outputs()
    }

    fn write_input(&mut self, index: usize, data: &[f32]) -> Result<()> {
        self.inner.write_input(index, data)
    }

    fn write_input_region(
        &mut self,
        index: usize,
        channels: Range<usize>,
        columns: Range<usize>,
        data: &[f32],
    ) -> Result<()> {
        self.inner
            .write_input_region(index, channels, columns, data)
    }

    fn run(&mut self) -> Result<()> {
        self.inner.run()
    }

    fn read_output(&self, index: usize, out: &mut [f32]) -> Result<()> {
        self.inner.read_output(index, out)?;
        if let (0, Fault::Perturb { at, delta }) = (index, self.fault) {
            out[at] += delta;
        }
        Ok(())
    }

    fn read_output_channels(
        &self,
        index: usize,
        channels: Range<usize>,
        out: &mut [f32],
    ) -> Result<()> {
        self.inner.read_output_channels(index, channels, out)
    }

    fn fork(&self) -> Result<Box<dyn Kernel>> {
        match self.fault {
            Fault::CannotFork => Err(DeviceError::Unavailable("no sharing".into())),
            Fault::ForkFails => Err(DeviceError::Runtime("the model was unloaded".into())),
            Fault::Perturb { .. } => Ok(Box::new(Faulty {
                inner: self.inner.fork()?,
                fault: self.fault,
            })),
        }
    }
}
