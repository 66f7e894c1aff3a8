//! One compiled op: the op as `mil` resolved it, its slots, and how to evaluate it.

use super::attention::sdpa;
use super::elementwise::{binary, select, unary};
use super::linalg::{conv, linear, matmul};
use super::pool::Pool;
use super::quant::{dequantize, quantize, AffineParams};
use super::reduce::{reduce, softmax};
use super::shape_ops::{concat, reshape, slice, split};
use super::tensor::Tensor;
use crate::error::{DeviceError, Result};
use anetrain_mil::{DType, OpKind};

/// Whether the op only re-views its input (no new values, so nothing to round).
pub(crate) fn is_view(kind: &OpKind) -> bool {
    matches!(
        kind,
        OpKind::Slice(_) | OpKind::Reshape(_) | OpKind::Transpose(_) | OpKind::Split { .. }
    )
}

/// A compiled op: slots it reads (tensor arguments in the op's argument order, `None` for an
/// absent optional one), slots it writes, and the slots that die once it has run.
#[derive(Clone, Debug)]
pub(crate) struct Step {
    pub kind: OpKind,
    /// The decoded scale and zero point of a `quantize` or `dequantize`.
    pub affine: Option<AffineParams>,
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
        let affine = || {
            self.affine.as_ref().ok_or_else(|| {
                DeviceError::Runtime(format!(
                    "internal error: op `{}` has no scale and zero point",
                    self.label
                ))
            })
        };
        let out = match &self.kind {
            OpKind::Slice(p) => slice(a(0)?, p),
            OpKind::Reshape(_) => reshape(a(0)?, shape, pool),
            OpKind::Transpose(perm) => a(0)?.permute(perm),
            OpKind::Concat { axis, interleave } => {
                let values: Vec<&Tensor> = args.iter().flatten().copied().collect();
                concat(&values, *axis, *interleave, shape, pool)
            }
            OpKind::Split { axis, sizes } => return Ok(split(a(0)?, *axis, sizes)),
            OpKind::Matmul {
                transpose_x,
                transpose_y,
            } => matmul(a(0)?, a(1)?, *transpose_x, *transpose_y, shape, pool)?,
            OpKind::Conv(p) => conv(a(0)?, a(1)?, p, shape, pool)?,
            OpKind::Linear => linear(a(0)?, a(1)?, args.get(2).copied().flatten(), shape, pool)?,
            OpKind::Unary(op) => unary(a(0)?, *op, pool),
            OpKind::Binary(op) => binary(a(0)?, a(1)?, *op, shape, pool),
            OpKind::Select => select(a(0)?, a(1)?, a(2)?, shape, pool),
            OpKind::Softmax { axis } => softmax(a(0)?, *axis, pool),
            OpKind::Reduce { kind, axes, .. } => reduce(a(0)?, *kind, axes, shape, pool),
            OpKind::Attention { scores, bool_mask } => sdpa(
                a(0)?,
                a(1)?,
                a(2)?,
                args.get(3).copied().flatten().map(|m| (m, *bool_mask)),
                scores,
                shape,
                pool,
            )?,
            OpKind::Quantize { dtype, .. } => {
                let (lo, hi) = if *dtype == DType::Int8 {
                    (-128.0, 127.0)
                } else {
                    (0.0, 255.0)
                };
                quantize(a(0)?, affine()?, lo, hi, pool)
            }
            OpKind::Dequantize(_) => dequantize(a(0)?, affine()?, pool),
            OpKind::Const | OpKind::ConstAffineDequantize(_) => {
                return Err(DeviceError::Runtime(format!(
                    "internal error: constant `{}` was not folded",
                    self.label
                )))
            }
        };
        Ok(vec![out])
    }
}
