//! One compiled op: its kind with every parameter resolved, and how to evaluate it.

use super::attention::{sdpa, SdpaParams};
use super::elementwise::{binary, select, unary, BinaryOp, UnaryOp};
use super::linalg::{conv, linear, matmul, ConvParams};
use super::pool::Pool;
use super::quant::{dequantize, quantize, AffineParams};
use super::reduce::{reduce, softmax, ReduceParams};
use super::shape_ops::{concat, reshape, slice, split, SliceParams};
use super::tensor::Tensor;
use crate::error::{DeviceError, Result};

/// An op with its parameters resolved at compile time (axes normalised, shapes inferred).
#[derive(Clone, Debug)]
pub(crate) enum StepKind {
    Slice(SliceParams),
    Reshape,
    Transpose(Vec<usize>),
    Concat {
        axis: usize,
        interleave: bool,
    },
    Split {
        axis: usize,
        sizes: Vec<usize>,
    },
    Matmul {
        tx: bool,
        ty: bool,
    },
    Conv(ConvParams),
    Linear,
    Unary(UnaryOp),
    Binary(BinaryOp),
    Select,
    Softmax(usize),
    Reduce(ReduceParams),
    Sdpa(SdpaParams),
    Quantize {
        params: AffineParams,
        lo: f32,
        hi: f32,
    },
    Dequantize(AffineParams),
}

impl StepKind {
    /// Whether the result only re-views its input (no new values, so nothing to round).
    pub fn is_view(&self) -> bool {
        matches!(
            self,
            StepKind::Slice(_)
                | StepKind::Reshape
                | StepKind::Transpose(_)
                | StepKind::Split { .. }
        )
    }
}

/// A compiled op: slots it reads (tensor arguments in the op's argument order, `None` for an
/// absent optional one), slots it writes, and the slots that die once it has run.
#[derive(Clone, Debug)]
pub(crate) struct Step {
    pub kind: StepKind,
    pub label: String,
    pub args: Vec<Option<usize>>,
    pub outputs: Vec<usize>,
    pub output_shapes: Vec<Vec<usize>>,
    /// Round the results to fp16 (precision `F16` and an fp16-declared result).
    pub round_f16: bool,
    pub free_after: Vec<usize>,
}

fn required<'a>(args: &[Option<&'a Tensor>], i: usize, label: &str) -> Result<&'a Tensor> {
    args.get(i).copied().flatten().ok_or_else(|| {
        DeviceError::Runtime(format!(
            "internal error: op `{label}` is missing argument {i}"
        ))
    })
}

impl Step {
    /// Evaluates the op on `args` (aligned with [`Step::args`]).
    pub fn exec(&self, args: &[Option<&Tensor>], pool: &mut Pool) -> Result<Vec<Tensor>> {
        let a = |i| required(args, i, &self.label);
        let shape = &self.output_shapes[0];
        let out = match &self.kind {
            StepKind::Slice(p) => slice(a(0)?, p),
            StepKind::Reshape => reshape(a(0)?, shape, pool),
            StepKind::Transpose(perm) => a(0)?.permute(perm),
            StepKind::Concat { axis, interleave } => {
                let values: Vec<&Tensor> = args.iter().flatten().copied().collect();
                concat(&values, *axis, *interleave, shape, pool)
            }
            StepKind::Split { axis, sizes } => return Ok(split(a(0)?, *axis, sizes)),
            StepKind::Matmul { tx, ty } => matmul(a(0)?, a(1)?, *tx, *ty, shape, pool)?,
            StepKind::Conv(p) => conv(a(0)?, a(1)?, p, shape, pool)?,
            StepKind::Linear => linear(a(0)?, a(1)?, args.get(2).copied().flatten(), shape, pool)?,
            StepKind::Unary(op) => unary(a(0)?, *op, pool),
            StepKind::Binary(op) => binary(a(0)?, a(1)?, *op, shape, pool),
            StepKind::Select => select(a(0)?, a(1)?, a(2)?, shape, pool),
            StepKind::Softmax(axis) => softmax(a(0)?, *axis, pool),
            StepKind::Reduce(p) => reduce(a(0)?, p, pool),
            StepKind::Sdpa(p) => sdpa(
                a(0)?,
                a(1)?,
                a(2)?,
                args.get(3).copied().flatten(),
                p,
                shape,
                pool,
            )?,
            StepKind::Quantize { params, lo, hi } => quantize(a(0)?, params, *lo, *hi, pool),
            StepKind::Dequantize(params) => dequantize(a(0)?, params, pool),
        };
        Ok(vec![out])
    }
}
