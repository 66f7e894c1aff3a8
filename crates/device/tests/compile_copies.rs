//! `Device::compile_copies`, the one fork-or-recompile path of training and generation: one
//! compile and forks where kernels fork, a compile per copy where they cannot, and copies that
//! never share buffers either way.

use anetrain_device::{CpuDevice, Device, DeviceError, Kernel, Precision, Result, TensorSpec};
use anetrain_mil::{Builder, Bundle, DType, Program, WeightFiles};
use std::cell::Cell;
use std::ops::Range;

/// `y = 2 x` on `[1, 4, 1, 8]`.
fn doubling() -> Bundle {
    let mut b = Builder::new();
    let x = b.input("x", DType::Fp32, [1, 4, 1, 8]).unwrap();
    let y = b.scale(x, 2.0).unwrap();
    b.output(y, "y").unwrap();
    b.finish().unwrap()
}

/// A CPU device that counts its compiles; with `forks: false` its kernels refuse to fork,
/// like a device that cannot share a compiled program, and with `fork_error` they fail to.
struct Counting {
    inner: CpuDevice,
    compiles: Cell<usize>,
    forks: bool,
    fork_error: bool,
}

impl Counting {
    fn new(forks: bool, fork_error: bool) -> Counting {
        Counting {
            inner: CpuDevice::new(Precision::F32),
            compiles: Cell::new(0),
            forks,
            fork_error,
        }
    }
}

impl Device for Counting {
    fn name(&self) -> String {
        "counting cpu".into()
    }

    fn compile(&self, program: &Program, weights: &WeightFiles) -> Result<Box<dyn Kernel>> {
        self.compiles.set(self.compiles.get() + 1);
        let inner = self.inner.compile(program, weights)?;
        if self.forks {
            return Ok(inner);
        }
        Ok(Box::new(Unforkable {
            inner,
            fork_error: self.fork_error,
        }))
    }
}

struct Unforkable {
    inner: Box<dyn Kernel>,
    fork_error: bool,
}

impl Kernel for Unforkable {
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
        self.inner.read_output(index, out)
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
        Err(if self.fork_error {
            DeviceError::Runtime("the model was unloaded".into())
        } else {
            DeviceError::Unavailable("no sharing".into())
        })
    }
}

/// Copy `i` gets input `i + 1`; each must return twice its own input.
fn assert_independent(kernels: &mut [Box<dyn Kernel>]) {
    for (i, k) in kernels.iter_mut().enumerate() {
        k.write_input(0, &[(i + 1) as f32; 32]).unwrap();
    }
    for (i, k) in kernels.iter_mut().enumerate() {
        k.run().unwrap();
        let mut out = [0.0f32; 32];
        k.read_output(0, &mut out).unwrap();
        assert!(
            out.iter().all(|&v| v == 2.0 * (i + 1) as f32),
            "copy {i}: {out:?}"
        );
    }
}

#[test]
fn forking_devices_compile_once() {
    let bundle = doubling();
    let device = Counting::new(true, false);
    let mut kernels = device
        .compile_copies(&bundle.program, &bundle.weights, 4)
        .unwrap();
    assert_eq!((kernels.len(), device.compiles.get()), (4, 1));
    assert_independent(&mut kernels);
}

#[test]
fn devices_that_cannot_fork_compile_each_copy() {
    let bundle = doubling();
    let device = Counting::new(false, false);
    let mut kernels = device
        .compile_copies(&bundle.program, &bundle.weights, 3)
        .unwrap();
    assert_eq!((kernels.len(), device.compiles.get()), (3, 3));
    assert_independent(&mut kernels);
}

#[test]
fn a_failing_fork_is_an_error_not_a_recompile() {
    let bundle = doubling();
    let device = Counting::new(false, true);
    let err = device
        .compile_copies(&bundle.program, &bundle.weights, 2)
        .err()
        .expect("a fork failure must be reported");
    assert!(err.to_string().contains("unloaded"), "{err}");
    assert_eq!(device.compiles.get(), 1);
}

#[test]
fn no_copies_compile_nothing() {
    let bundle = doubling();
    let device = Counting::new(true, false);
    let kernels = device
        .compile_copies(&bundle.program, &bundle.weights, 0)
        .unwrap();
    assert!(kernels.is_empty());
    assert_eq!(device.compiles.get(), 0);
}
