//! `Device::compile_copies`, the one fork-or-recompile path of training and generation: one
//! compile and forks where kernels fork, a compile per copy where they cannot, and copies that
//! never share buffers either way.

use anetrain_device::{CpuDevice, Device, Kernel, Precision, Result};
use anetrain_mil::{Builder, Bundle, DType, Program, WeightFiles};
use std::cell::Cell;

mod common;
use common::{Fault, Faulty};

/// `y = 2 x` on `[1, 4, 1, 8]`.
fn doubling() -> Bundle {
    let mut b = Builder::new();
    let x = b.input("x", DType::Fp32, [1, 4, 1, 8]).unwrap();
    let y = b.scale(x, 2.0).unwrap();
    b.output(y, "y").unwrap();
    b.finish().unwrap()
}

/// A CPU device that counts its compiles, its kernels given `fault` (none: they fork).
struct Counting {
    inner: CpuDevice,
    compiles: Cell<usize>,
    fault: Option<Fault>,
}

impl Counting {
    fn new(fault: Option<Fault>) -> Counting {
        Counting {
            inner: CpuDevice::new(Precision::F32),
            compiles: Cell::new(0),
            fault,
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
        Ok(match self.fault {
            Some(fault) => Box::new(Faulty { inner, fault }),
            None => inner,
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

/// Forking kernels cost one compile for four copies; kernels that cannot fork, one each.
#[test]
fn copies_are_forks_where_kernels_fork_and_compiles_where_they_cannot() {
    let bundle = doubling();
    for (fault, copies, compiles) in [(None, 4, 1), (Some(Fault::CannotFork), 3, 3)] {
        let device = Counting::new(fault);
        let mut kernels = device
            .compile_copies(&bundle.program, &bundle.weights, copies)
            .unwrap();
        assert_eq!(
            (kernels.len(), device.compiles.get()),
            (copies, compiles),
            "{fault:?}"
        );
        assert_independent(&mut kernels);
    }
}

#[test]
fn a_failing_fork_is_an_error_not_a_recompile() {
    let bundle = doubling();
    let device = Counting::new(Some(Fault::ForkFails));
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
    let device = Counting::new(None);
    let kernels = device
        .compile_copies(&bundle.program, &bundle.weights, 0)
        .unwrap();
    assert!(kernels.is_empty());
    assert_eq!(device.compiles.get(), 0);
}
