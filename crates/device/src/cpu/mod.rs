//! The CPU device: a MIL interpreter that is both the reference semantics and fast.
//!
//! [`CpuDevice::compile`](crate::Device::compile) turns the `main` function into a plan of
//! steps over value slots ([`compile`]); the kernel runs it over strided views ([`tensor`]),
//! calling `gemm` for matmul, linear and conv ([`linalg`]) and rayon-parallel loops for the
//! rest. In `F16` precision every fp16-declared op result is rounded to fp16, as on the ANE.

mod attention;
mod compile;
mod elementwise;
pub mod fast_exp;
pub mod gemm;
mod gemv;
mod input;
mod kernel;
mod linalg;
mod pool;
mod quant;
mod reduce;
mod shape_ops;
pub mod simd;
mod step;
mod tensor;

pub use tensor::{PAR_GRAIN, PAR_MIN};

use crate::error::Result;
use crate::{Device, Kernel};
use anetrain_mil::{Program, WeightFiles};

/// How the CPU device rounds intermediate results.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Precision {
    /// Every tensor is held in fp32, whatever dtype the program declares.
    #[default]
    F32,
    /// Every fp16-typed op result is rounded to fp16, as the ANE's datapath does.
    F16,
}

/// The CPU device.
#[derive(Clone, Debug, Default)]
pub struct CpuDevice {
    pub precision: Precision,
}

impl CpuDevice {
    /// A CPU device computing in `precision`.
    pub fn new(precision: Precision) -> CpuDevice {
        CpuDevice { precision }
    }
}

impl Device for CpuDevice {
    fn name(&self) -> String {
        match self.precision {
            Precision::F32 => "cpu (f32)".to_string(),
            Precision::F16 => "cpu (f16)".to_string(),
        }
    }

    fn compile(&self, program: &Program, weights: &WeightFiles) -> Result<Box<dyn Kernel>> {
        let plan = compile::compile(program, weights, self.precision)?;
        Ok(Box::new(kernel::CpuKernel::new(
            std::sync::Arc::new(plan),
            self.precision,
        )))
    }
}
