//! Resolution: each op's meaning ([`OpKind`]) and output types, from its argument types and
//! constant parameters. The builder types new ops with it, validation checks parsed programs
//! with it, and devices evaluate the [`Resolved`] form it produces; no other code derives a
//! shape rule.

use crate::ops::Op;
use crate::types::{DType, Literal, TensorType, Type};

/// What inference knows about one argument: its type, and its value when it is a `const`.
#[derive(Clone, Copy, Debug)]
pub struct ArgInfo<'a> {
    pub ty: &'a Type,
    pub value: Option<&'a Literal>,
}

/// An argument as bound at a call site.
#[derive(Clone, Debug)]
pub enum Bound<'a> {
    One(ArgInfo<'a>),
    Tuple(Vec<ArgInfo<'a>>),
}

mod args;
mod kinds;
mod shapes;

use args::Args;
pub use kinds::{AffinePlan, BinaryKind, GeluMode, OpKind, ReduceKind, Resolved, UnaryKind};
pub use shapes::{
    broadcast_shapes, matmul_shape, permutation, reduced_shape, reduction_axes, reshape_target,
    split_sizes, ConvPlan, SlicePlan,
};

type Res<T> = std::result::Result<T, String>;

/// Resolves a possibly negative axis against `rank`.
pub fn normalize_axis(axis: i64, rank: usize) -> Res<usize> {
    let r = rank as i64;
    let a = if axis < 0 { axis + r } else { axis };
    if a < 0 || a >= r.max(1) {
        return Err(format!("axis {axis} is out of range for rank {rank}"));
    }
    Ok(a as usize)
}

fn float_only(op: Op, t: &TensorType) -> Res<()> {
    if t.dtype.is_float() {
        Ok(())
    } else {
        Err(format!("{op} needs a fp16 or fp32 input, got {}", t.dtype))
    }
}

fn same_dtype(a: &TensorType, b: &TensorType) -> Res<()> {
    if a.dtype == b.dtype {
        Ok(())
    } else {
        Err(format!(
            "operands have different dtypes ({} and {}); insert a cast",
            a.dtype, b.dtype
        ))
    }
}

fn parse_dtype(name: &str) -> Res<DType> {
    DType::from_name(name)
        .filter(|d| d.is_tensor_element())
        .ok_or_else(|| format!("unknown dtype `{name}`"))
}

fn one(kind: OpKind, t: TensorType) -> Res<Resolved> {
    Ok(Resolved {
        kind,
        outputs: vec![Type::Tensor(t)],
    })
}

/// Resolves `op` given its bound arguments and bracket attributes: its meaning and output types.
pub fn resolve_op(
    op: Op,
    args: &[(&str, Bound<'_>)],
    attrs: &[(String, Literal)],
) -> Res<Resolved> {
    let a = Args { args };
    let attr = |n: &str| {
        attrs
            .iter()
            .find(|(k, _)| k == n)
            .map(|(_, l)| l)
            .ok_or_else(|| format!("missing attribute `{n}`"))
    };
    match op {
        Op::Const => Ok(Resolved {
            kind: OpKind::Const,
            outputs: vec![attr("val")
                .map_err(|_| "const needs a `val` attribute".to_string())?
                .ty()],
        }),
        Op::ConstexprAffineDequantize => {
            let q = attr("quantized_data")?.ty();
            let scale = attr("scale")?.ty();
            let zero_point = attr("zero_point")?.ty();
            let axis = attr("axis")?
                .as_f64()
                .ok_or("missing int32 attribute `axis`")?;
            let q = q
                .as_tensor()
                .filter(|t| matches!(t.dtype, DType::Int8 | DType::Uint8))
                .ok_or("`quantized_data` must be an int8 or uint8 tensor")?;
            normalize_axis(axis as i64, q.rank())?;
            if !scale.dtype().is_float() {
                return Err("`scale` must be fp16 or fp32".into());
            }
            let affine = AffinePlan::new(
                &q.shape,
                scale.numel(),
                Some(zero_point.numel()),
                Some(axis as i64),
            )?;
            one(
                OpKind::ConstAffineDequantize(affine),
                TensorType::new(scale.dtype(), q.shape.clone()),
            )
        }
        Op::SliceBySize => {
            let x = a.tensor("x")?;
            let plan = SlicePlan::by_size(&x.shape, &a.req_ints("begin")?, &a.req_ints("size")?)?;
            let shape = plan.output_shape();
            one(OpKind::Slice(plan), TensorType::new(x.dtype, shape))
        }
        Op::SliceByIndex => {
            let x = a.tensor("x")?;
            let plan = SlicePlan::by_index(
                &x.shape,
                &a.req_ints("begin")?,
                &a.req_ints("end")?,
                a.ints("stride")?.as_deref(),
                a.ints("begin_mask")?.as_deref(),
                a.ints("end_mask")?.as_deref(),
                a.ints("squeeze_mask")?.as_deref(),
            )?;
            let shape = plan.output_shape();
            one(OpKind::Slice(plan), TensorType::new(x.dtype, shape))
        }
        Op::Reshape => {
            let x = a.tensor("x")?;
            let shape = reshape_target(&x.shape, &a.req_ints("shape")?)?;
            one(
                OpKind::Reshape(shape.clone()),
                TensorType::new(x.dtype, shape),
            )
        }
        Op::Transpose => {
            let x = a.tensor("x")?;
            let perm = permutation(&a.req_ints("perm")?, x.rank())?;
            let shape: Vec<usize> = perm.iter().map(|&p| x.shape[p]).collect();
            one(OpKind::Transpose(perm), TensorType::new(x.dtype, shape))
        }
        Op::Concat => resolve_concat(&a),
        Op::Split => {
            let x = a.tensor("x")?;
            let axis = normalize_axis(a.int("axis")?.ok_or("missing argument `axis`")?, x.rank())?;
            let sizes = split_sizes(x.shape[axis], a.int("num_splits")?, a.ints("split_sizes")?)?;
            let outputs = sizes
                .iter()
                .map(|&s| {
                    let mut shape = x.shape.clone();
                    shape[axis] = s;
                    Type::Tensor(TensorType::new(x.dtype, shape))
                })
                .collect();
            Ok(Resolved {
                kind: OpKind::Split { axis, sizes },
                outputs,
            })
        }
        Op::Matmul => {
            let x = a.tensor("x")?;
            let y = a.tensor("y")?;
            same_dtype(&x, &y)?;
            let transpose_x = a.bool("transpose_x")?.unwrap_or(false);
            let transpose_y = a.bool("transpose_y")?.unwrap_or(false);
            let shape = matmul_shape(&x.shape, &y.shape, transpose_x, transpose_y)?;
            one(
                OpKind::Matmul {
                    transpose_x,
                    transpose_y,
                },
                TensorType::new(x.dtype, shape),
            )
        }
        Op::Conv => {
            let x = a.tensor("x")?;
            let w = a.tensor("weight")?;
            same_dtype(&x, &w)?;
            let conv = ConvPlan::new(
                &x.shape,
                &w.shape,
                a.ints("strides")?,
                a.string("pad_type")?,
                a.ints("pad")?,
                a.ints("dilations")?,
                a.int("groups")?,
            )?;
            let shape = conv.output_shape();
            one(OpKind::Conv(conv), TensorType::new(x.dtype, shape))
        }
        Op::Linear => {
            let x = a.tensor("x")?;
            let w = a.tensor("weight")?;
            same_dtype(&x, &w)?;
            if w.rank() != 2 || x.rank() == 0 || x.shape[x.rank() - 1] != w.shape[1] {
                return Err(format!(
                    "linear needs x [..., in] and weight [out, in]; got {:?} and {:?}",
                    x.shape, w.shape
                ));
            }
            if let Some(b) = a.opt_tensor("bias")? {
                same_dtype(&x, &b)?;
                if b.shape != [w.shape[0]] {
                    return Err(format!("bias must have shape [{}]", w.shape[0]));
                }
            }
            let mut shape = x.shape.clone();
            *shape.last_mut().ok_or("x must not be a scalar")? = w.shape[0];
            one(OpKind::Linear, TensorType::new(x.dtype, shape))
        }
        _ if op.is_binary() => resolve_binary(op, &a),
        _ if op.is_unary() || matches!(op, Op::Clip | Op::Cast) => resolve_unary(op, &a),
        Op::Softmax => {
            let x = a.tensor("x")?;
            float_only(op, &x)?;
            let axis = normalize_axis(a.int("axis")?.unwrap_or(-1), x.rank())?;
            one(OpKind::Softmax { axis }, x)
        }
        _ if op.is_reduction() => {
            let x = a.tensor("x")?;
            float_only(op, &x)?;
            let keep_dims = a.bool("keep_dims")?.unwrap_or(false);
            let axes = reduction_axes(a.ints("axes")?.as_deref(), x.rank())?;
            let shape = reduced_shape(&x.shape, &axes, keep_dims);
            let kind = match op {
                Op::ReduceSum => ReduceKind::Sum,
                Op::ReduceMean => ReduceKind::Mean,
                _ => ReduceKind::Max,
            };
            one(
                OpKind::Reduce {
                    kind,
                    axes,
                    keep_dims,
                },
                TensorType::new(x.dtype, shape),
            )
        }
        Op::Select => {
            let c = a.tensor("cond")?;
            let x = a.tensor("a")?;
            let y = a.tensor("b")?;
            if c.dtype != DType::Bool {
                return Err("`cond` must be a bool tensor".into());
            }
            same_dtype(&x, &y)?;
            let shape = broadcast_shapes(&broadcast_shapes(&c.shape, &x.shape)?, &y.shape)?;
            one(OpKind::Select, TensorType::new(x.dtype, shape))
        }
        Op::ScaledDotProductAttention => resolve_attention(&a),
        Op::Quantize | Op::Dequantize => resolve_affine(op, &a),
        _ => Err(format!("no type rule for {op}")),
    }
}

fn resolve_concat(a: &Args<'_, '_>) -> Res<Resolved> {
    let values = match a.get("values") {
        Some(Bound::Tuple(v)) if !v.is_empty() => v,
        _ => return Err("`values` must be a non-empty tuple".into()),
    };
    let first = values[0]
        .ty
        .as_tensor()
        .ok_or("concat values must be tensors")?;
    let axis = normalize_axis(
        a.int("axis")?.ok_or("missing argument `axis`")?,
        first.rank(),
    )?;
    let interleave = a.bool("interleave")?.unwrap_or(false);
    let mut shape = first.shape.clone();
    shape[axis] = 0;
    for v in values {
        let t = v.ty.as_tensor().ok_or("concat values must be tensors")?;
        if t.dtype != first.dtype || t.rank() != first.rank() {
            return Err("concat values must share dtype and rank".into());
        }
        for d in 0..t.rank() {
            if d != axis && t.shape[d] != first.shape[d] {
                return Err(format!(
                    "concat values differ on axis {d} ({:?} vs {:?})",
                    t.shape, first.shape
                ));
            }
        }
        if interleave && t.shape[axis] != first.shape[axis] {
            return Err("interleaved concat needs equal sizes along the axis".into());
        }
        shape[axis] += t.shape[axis];
    }
    one(
        OpKind::Concat { axis, interleave },
        TensorType::new(first.dtype, shape),
    )
}

fn resolve_binary(op: Op, a: &Args<'_, '_>) -> Res<Resolved> {
    let (xa, ya) = (a.one("x")?, a.one("y")?);
    let (x, y) = (a.tensor("x")?, a.tensor("y")?);
    same_dtype(&x, &y)?;
    let shape = broadcast_shapes(&x.shape, &y.shape)?;
    let kind = match op {
        Op::Add => BinaryKind::Add,
        Op::Sub => BinaryKind::Sub,
        Op::Mul => BinaryKind::Mul,
        Op::RealDiv => BinaryKind::RealDiv,
        Op::Pow => BinaryKind::Pow,
        Op::Greater => BinaryKind::Greater,
        Op::Less => BinaryKind::Less,
        _ => return Err(format!("{op} is not a binary op")),
    };
    let dtype = if matches!(kind, BinaryKind::Greater | BinaryKind::Less) {
        DType::Bool
    } else {
        float_only(op, &x)?;
        x.dtype
    };
    let both_scalar = matches!(xa.ty, Type::Scalar(_)) && matches!(ya.ty, Type::Scalar(_));
    Ok(Resolved {
        kind: OpKind::Binary(kind),
        outputs: vec![if both_scalar {
            Type::Scalar(dtype)
        } else {
            Type::Tensor(TensorType::new(dtype, shape))
        }],
    })
}

fn resolve_unary(op: Op, a: &Args<'_, '_>) -> Res<Resolved> {
    let x = a.one("x")?;
    let need = |n: &str| {
        a.number(n)?
            .ok_or_else(|| format!("missing argument `{n}`"))
    };
    let kind = match op {
        Op::Cast => {
            let dtype = parse_dtype(a.string("dtype")?.ok_or("missing argument `dtype`")?)?;
            let ty = match x.ty {
                Type::Scalar(_) => Type::Scalar(dtype),
                Type::Tensor(t) => Type::Tensor(TensorType::new(dtype, t.shape.clone())),
            };
            return Ok(Resolved {
                kind: OpKind::Unary(UnaryKind::Cast(dtype)),
                outputs: vec![ty],
            });
        }
        Op::Sqrt => UnaryKind::Sqrt,
        Op::Rsqrt => UnaryKind::Rsqrt {
            epsilon: a.number("epsilon")?.unwrap_or(1e-12),
        },
        Op::Exp => UnaryKind::Exp,
        Op::Log => UnaryKind::Log {
            epsilon: a.number("epsilon")?.unwrap_or(1e-45),
        },
        Op::Tanh => UnaryKind::Tanh,
        Op::Sigmoid => UnaryKind::Sigmoid,
        Op::Silu => UnaryKind::Silu,
        Op::Relu => UnaryKind::Relu,
        Op::Gelu => UnaryKind::Gelu(match a.string("mode")? {
            None | Some("EXACT") => GeluMode::Exact,
            Some("TANH_APPROXIMATION") => GeluMode::Tanh,
            Some("SIGMOID_APPROXIMATION") => GeluMode::Sigmoid,
            Some(mode) => {
                return Err(format!(
                "unknown gelu mode `{mode}` (EXACT, TANH_APPROXIMATION or SIGMOID_APPROXIMATION)"
            ))
            }
        }),
        Op::Clip => UnaryKind::Clip {
            alpha: need("alpha")?,
            beta: need("beta")?,
        },
        _ => return Err(format!("{op} is not a unary op")),
    };
    float_only(op, &a.tensor("x")?)?;
    Ok(Resolved {
        kind: OpKind::Unary(kind),
        outputs: vec![x.ty.clone()],
    })
}

fn resolve_attention(a: &Args<'_, '_>) -> Res<Resolved> {
    let q = a.tensor("query")?;
    let k = a.tensor("key")?;
    let v = a.tensor("value")?;
    same_dtype(&q, &k)?;
    same_dtype(&q, &v)?;
    float_only(Op::ScaledDotProductAttention, &q)?;
    let r = q.rank();
    if r < 3 || k.rank() != r || v.rank() != r {
        return Err("query, key and value need the same rank, at least 3".into());
    }
    let (l, e) = (q.shape[r - 2], q.shape[r - 1]);
    let (s, ek) = (k.shape[r - 2], k.shape[r - 1]);
    if ek != e
        || v.shape[r - 2] != s
        || q.shape[..r - 2] != k.shape[..r - 2]
        || q.shape[..r - 2] != v.shape[..r - 2]
    {
        return Err(format!(
            "incompatible query {:?}, key {:?}, value {:?}",
            q.shape, k.shape, v.shape
        ));
    }
    let mut scores = q.shape[..r - 2].to_vec();
    scores.extend([l, s]);
    let mut bool_mask = false;
    if let Some(m) = a.opt_tensor("attn_mask")? {
        if m.dtype != DType::Bool && m.dtype != q.dtype {
            return Err(format!(
                "attn_mask must be bool or {} like the query, got {}",
                q.dtype, m.dtype
            ));
        }
        if broadcast_shapes(&m.shape, &scores)? != scores {
            return Err(format!(
                "attn_mask {:?} does not broadcast to the scores {scores:?}",
                m.shape
            ));
        }
        bool_mask = m.dtype == DType::Bool;
    }
    let mut shape = q.shape.clone();
    shape[r - 1] = v.shape[r - 1];
    one(
        OpKind::Attention { scores, bool_mask },
        TensorType::new(q.dtype, shape),
    )
}

fn resolve_affine(op: Op, a: &Args<'_, '_>) -> Res<Resolved> {
    let x = a.tensor("input")?;
    let scale = a.param("scale")?.ok_or("missing argument `scale`")?;
    let affine = AffinePlan::new(
        &x.shape,
        scale.ty().numel(),
        a.param_len("zero_point")?,
        a.int("axis")?,
    )?;
    if op == Op::Dequantize {
        if !matches!(x.dtype, DType::Int8 | DType::Uint8) {
            return Err("dequantize needs an int8 or uint8 input".into());
        }
        if !scale.ty().dtype().is_float() {
            return Err("`scale` must be fp16 or fp32".into());
        }
        return one(
            OpKind::Dequantize(affine),
            TensorType::new(scale.ty().dtype(), x.shape),
        );
    }
    float_only(op, &x)?;
    let dtype = parse_dtype(
        a.string("output_dtype")?
            .ok_or("missing argument `output_dtype`")?,
    )?;
    if !matches!(dtype, DType::Int8 | DType::Uint8) {
        return Err("output_dtype must be int8 or uint8".into());
    }
    one(
        OpKind::Quantize { affine, dtype },
        TensorType::new(dtype, x.shape),
    )
}
