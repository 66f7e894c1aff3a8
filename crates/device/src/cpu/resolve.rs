//! Per-op parameter resolution and shape inference for [`compile`](super::compile): turns
//! an operation's const parameters and input shapes into a [`StepKind`] and output shapes.

use super::attention::sdpa_params;
use super::compile::{type_error, Compiler};
use super::elementwise::{broadcast_shapes, BinaryOp, CastTarget, GeluMode, UnaryOp};
use super::linalg::{conv_params, linear_shape, matmul_shape, ConvArgs};
use super::quant::affine_params;
use super::reduce::{ReduceKind, ReduceParams};
use super::shape_ops::{
    concat_shape, normalize_axis, reshape_shape, slice_by_index, slice_by_size, split_sizes,
    transpose_perm, IndexSliceArgs,
};
use super::step::StepKind;
use crate::error::Result;
use anetrain_mil::{DType, Op, Operation};

impl Compiler<'_> {
    /// Resolves the parameters of a computing op and infers its output shapes.
    pub(super) fn resolve<'s>(
        &self,
        op: &Operation,
        shape: &dyn Fn(usize) -> Result<&'s [usize]>,
        dtypes: &[Option<DType>],
    ) -> Result<(StepKind, Vec<Vec<usize>>)> {
        let e = |m: String| type_error(op, m);
        let one = |k: StepKind, s: Vec<usize>| Ok((k, vec![s]));
        match op.op {
            Op::SliceBySize => {
                let p = slice_by_size(
                    shape(0)?,
                    &self.req_ints(op, "begin")?,
                    &self.req_ints(op, "size")?,
                )
                .map_err(e)?;
                let s = p.out_shape();
                one(StepKind::Slice(p), s)
            }
            Op::SliceByIndex => {
                let extra = IndexSliceArgs {
                    stride: self.ints(op, "stride")?,
                    begin_mask: self.ints(op, "begin_mask")?,
                    end_mask: self.ints(op, "end_mask")?,
                    squeeze_mask: self.ints(op, "squeeze_mask")?,
                };
                let p = slice_by_index(
                    shape(0)?,
                    &self.req_ints(op, "begin")?,
                    &self.req_ints(op, "end")?,
                    &extra,
                )
                .map_err(e)?;
                let s = p.out_shape();
                one(StepKind::Slice(p), s)
            }
            Op::Reshape => one(
                StepKind::Reshape,
                reshape_shape(shape(0)?, &self.req_ints(op, "shape")?).map_err(e)?,
            ),
            Op::Transpose => {
                let x = shape(0)?;
                let perm = transpose_perm(x.len(), &self.req_ints(op, "perm")?).map_err(e)?;
                let s = perm.iter().map(|&p| x[p]).collect();
                one(StepKind::Transpose(perm), s)
            }
            Op::Concat => {
                let all: Vec<&[usize]> = (0..dtypes.len()).map(shape).collect::<Result<_>>()?;
                let rank = all.first().map_or(0, |s| s.len());
                let axis = self
                    .int(op, "axis")?
                    .ok_or_else(|| e("missing argument `axis`".into()))?;
                let axis = normalize_axis(axis, rank).map_err(e)?;
                let interleave = self.flag(op, "interleave")?;
                let s = concat_shape(&all, axis, interleave).map_err(e)?;
                one(StepKind::Concat { axis, interleave }, s)
            }
            Op::Split => {
                let x = shape(0)?;
                let axis = self
                    .int(op, "axis")?
                    .ok_or_else(|| e("missing argument `axis`".into()))?;
                let axis = normalize_axis(axis, x.len()).map_err(e)?;
                let sizes = split_sizes(
                    x[axis],
                    self.int(op, "num_splits")?,
                    self.ints(op, "split_sizes")?,
                )
                .map_err(e)?;
                let shapes = sizes
                    .iter()
                    .map(|&n| {
                        let mut s = x.to_vec();
                        s[axis] = n;
                        s
                    })
                    .collect();
                Ok((StepKind::Split { axis, sizes }, shapes))
            }
            Op::Matmul => {
                let (tx, ty) = (self.flag(op, "transpose_x")?, self.flag(op, "transpose_y")?);
                let s = matmul_shape(shape(0)?, shape(1)?, tx, ty).map_err(e)?;
                one(StepKind::Matmul { tx, ty }, s)
            }
            Op::Conv => {
                let args = ConvArgs {
                    strides: self.ints(op, "strides")?,
                    pad_type: self.string(op, "pad_type")?,
                    pad: self.ints(op, "pad")?,
                    dilations: self.ints(op, "dilations")?,
                    groups: self.int(op, "groups")?,
                };
                let (p, s) = conv_params(shape(0)?, shape(1)?, args).map_err(e)?;
                one(StepKind::Conv(p), s)
            }
            Op::Linear => {
                let bias = if dtypes.get(2).copied().flatten().is_some() {
                    Some(shape(2)?)
                } else {
                    None
                };
                one(
                    StepKind::Linear,
                    linear_shape(shape(0)?, shape(1)?, bias).map_err(e)?,
                )
            }
            Op::Add | Op::Sub | Op::Mul | Op::RealDiv | Op::Pow | Op::Greater | Op::Less => {
                let bop = match op.op {
                    Op::Add => BinaryOp::Add,
                    Op::Sub => BinaryOp::Sub,
                    Op::Mul => BinaryOp::Mul,
                    Op::RealDiv => BinaryOp::Div,
                    Op::Pow => BinaryOp::Pow,
                    Op::Greater => BinaryOp::Greater,
                    _ => BinaryOp::Less,
                };
                let (x, y) = (shape(0)?, shape(1)?);
                let s = broadcast_shapes(x, y)
                    .ok_or_else(|| e(format!("shapes {x:?} and {y:?} do not broadcast")))?;
                one(StepKind::Binary(bop), s)
            }
            Op::Select => {
                let (c, a, b) = (shape(0)?, shape(1)?, shape(2)?);
                let s = broadcast_shapes(c, a)
                    .and_then(|s| broadcast_shapes(&s, b))
                    .ok_or_else(|| e(format!("shapes {c:?}, {a:?} and {b:?} do not broadcast")))?;
                one(StepKind::Select, s)
            }
            Op::Sqrt
            | Op::Rsqrt
            | Op::Exp
            | Op::Log
            | Op::Tanh
            | Op::Sigmoid
            | Op::Silu
            | Op::Relu
            | Op::Gelu
            | Op::Clip
            | Op::Cast => {
                let uop = self.unary_op(op)?;
                one(StepKind::Unary(uop), shape(0)?.to_vec())
            }
            Op::Softmax => {
                let x = shape(0)?;
                let axis =
                    normalize_axis(self.int(op, "axis")?.unwrap_or(-1), x.len()).map_err(e)?;
                one(StepKind::Softmax(axis), x.to_vec())
            }
            Op::ReduceSum | Op::ReduceMean | Op::ReduceMax => {
                let x = shape(0)?;
                let kind = match op.op {
                    Op::ReduceSum => ReduceKind::Sum,
                    Op::ReduceMean => ReduceKind::Mean,
                    _ => ReduceKind::Max,
                };
                let mut axes: Vec<usize> = match self.ints(op, "axes")? {
                    None => (0..x.len()).collect(),
                    Some(v) => v
                        .iter()
                        .map(|&a| normalize_axis(a, x.len()))
                        .collect::<std::result::Result<_, _>>()
                        .map_err(e)?,
                };
                axes.sort_unstable();
                axes.dedup();
                let keep = self.flag(op, "keep_dims")?;
                let out_shape = (0..x.len())
                    .filter_map(|d| match (axes.contains(&d), keep) {
                        (false, _) => Some(x[d]),
                        (true, true) => Some(1),
                        (true, false) => None,
                    })
                    .collect::<Vec<_>>();
                let s = out_shape.clone();
                one(
                    StepKind::Reduce(ReduceParams {
                        kind,
                        axes,
                        out_shape,
                    }),
                    s,
                )
            }
            Op::ScaledDotProductAttention => {
                let mask = match dtypes.get(3).copied().flatten() {
                    Some(d) => Some((shape(3)?, d == DType::Bool)),
                    None => None,
                };
                let (p, s) = sdpa_params(shape(0)?, shape(1)?, shape(2)?, mask).map_err(e)?;
                one(StepKind::Sdpa(p), s)
            }
            Op::Quantize | Op::Dequantize => {
                let x = shape(0)?;
                let scale = self
                    .floats(op, "scale")?
                    .ok_or_else(|| e("missing argument `scale`".into()))?;
                let p = affine_params(
                    x,
                    scale,
                    self.floats(op, "zero_point")?,
                    self.int(op, "axis")?,
                )
                .map_err(e)?;
                if op.op == Op::Dequantize {
                    return one(StepKind::Dequantize(p), x.to_vec());
                }
                let (lo, hi) = match self.string(op, "output_dtype")?.as_deref() {
                    Some("int8") => (-128.0, 127.0),
                    Some("uint8") => (0.0, 255.0),
                    other => {
                        return Err(e(format!(
                            "output_dtype {other:?} must be \"int8\" or \"uint8\""
                        )))
                    }
                };
                one(StepKind::Quantize { params: p, lo, hi }, x.to_vec())
            }
            Op::Const | Op::ConstexprAffineDequantize => {
                Err(e("constants are folded, not run".into()))
            }
        }
    }

    fn unary_op(&self, op: &Operation) -> Result<UnaryOp> {
        Ok(match op.op {
            Op::Sqrt => UnaryOp::Sqrt,
            Op::Rsqrt => UnaryOp::Rsqrt(self.scalar(op, "epsilon")?.unwrap_or(1e-12)),
            Op::Exp => UnaryOp::Exp,
            Op::Log => UnaryOp::Log(self.scalar(op, "epsilon")?.unwrap_or(1e-45)),
            Op::Tanh => UnaryOp::Tanh,
            Op::Sigmoid => UnaryOp::Sigmoid,
            Op::Silu => UnaryOp::Silu,
            Op::Relu => UnaryOp::Relu,
            Op::Gelu => UnaryOp::Gelu(match self.string(op, "mode")?.as_deref() {
                None | Some("EXACT") => GeluMode::Exact,
                Some("TANH_APPROXIMATION") => GeluMode::Tanh,
                Some("SIGMOID_APPROXIMATION") => GeluMode::Sigmoid,
                Some(m) => {
                    return Err(type_error(
                        op,
                        format!(
                        "gelu mode `{m}` is not EXACT, TANH_APPROXIMATION or SIGMOID_APPROXIMATION"
                    ),
                    ))
                }
            }),
            Op::Clip => {
                let need = |n: &str| -> Result<f32> {
                    self.scalar(op, n)?
                        .ok_or_else(|| type_error(op, format!("missing argument `{n}`")))
                };
                UnaryOp::Clip(need("alpha")?, need("beta")?)
            }
            _ => UnaryOp::Cast(match self.string(op, "dtype")?.as_deref() {
                Some("fp16" | "fp32") => CastTarget::Float,
                Some("int32") => CastTarget::Int32,
                Some("int8") => CastTarget::Int8,
                Some("uint8") => CastTarget::Uint8,
                Some("bool") => CastTarget::Bool,
                other => {
                    return Err(type_error(
                        op,
                        format!(
                        "cast dtype {other:?} is not one of fp16, fp32, int32, int8, uint8, bool"
                    ),
                    ))
                }
            }),
        })
    }
}
