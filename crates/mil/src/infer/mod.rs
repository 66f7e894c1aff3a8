//! Type and shape inference: the output types each op produces from its argument types and
//! constant parameters. The builder uses it to type new ops; validation uses it to check
//! parsed programs.

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

mod shapes;

use shapes::dim;
pub use shapes::{
    broadcast_shapes, matmul_shape, permutation, reduced_shape, reduction_axes, reshape_target,
    split_sizes, ConvPlan, SliceByIndexPlan,
};

type Res<T> = std::result::Result<T, String>;

/// The arguments of one op, looked up by name.
struct Args<'a, 'b> {
    args: &'b [(&'b str, Bound<'a>)],
}

impl<'a> Args<'a, '_> {
    fn get(&self, name: &str) -> Option<&Bound<'a>> {
        self.args.iter().find(|(n, _)| *n == name).map(|(_, b)| b)
    }

    fn one(&self, name: &str) -> Res<ArgInfo<'a>> {
        match self.get(name) {
            Some(Bound::One(a)) => Ok(*a),
            Some(Bound::Tuple(_)) => Err(format!("argument `{name}` must be a single value")),
            None => Err(format!("missing argument `{name}`")),
        }
    }

    fn tensor(&self, name: &str) -> Res<TensorType> {
        let a = self.one(name)?;
        Ok(match a.ty {
            Type::Tensor(t) => t.clone(),
            Type::Scalar(d) => TensorType::new(*d, []),
        })
    }

    fn opt_tensor(&self, name: &str) -> Res<Option<TensorType>> {
        match self.get(name) {
            None => Ok(None),
            Some(_) => self.tensor(name).map(Some),
        }
    }

    fn param(&self, name: &str) -> Res<Option<&'a Literal>> {
        match self.get(name) {
            None => Ok(None),
            Some(Bound::Tuple(_)) => Err(format!("argument `{name}` must be a single value")),
            Some(Bound::One(a)) => a
                .value
                .map(Some)
                .ok_or_else(|| format!("argument `{name}` must name a const")),
        }
    }

    fn ints(&self, name: &str) -> Res<Option<Vec<i64>>> {
        match self.param(name)? {
            None => Ok(None),
            Some(l) => l
                .as_i64_vec()
                .map(Some)
                .ok_or_else(|| format!("argument `{name}` must be an integer const")),
        }
    }

    fn req_ints(&self, name: &str) -> Res<Vec<i64>> {
        self.ints(name)?
            .ok_or_else(|| format!("missing argument `{name}`"))
    }

    fn int(&self, name: &str) -> Res<Option<i64>> {
        match self.ints(name)? {
            None => Ok(None),
            Some(v) if v.len() == 1 => Ok(Some(v[0])),
            Some(_) => Err(format!("argument `{name}` must be a scalar")),
        }
    }

    fn bool(&self, name: &str) -> Res<Option<bool>> {
        match self.param(name)? {
            None => Ok(None),
            Some(l) => l
                .as_bool()
                .map(Some)
                .ok_or_else(|| format!("argument `{name}` must be a bool const")),
        }
    }

    fn string(&self, name: &str) -> Res<Option<&'a str>> {
        match self.param(name)? {
            None => Ok(None),
            Some(l) => l
                .as_str()
                .map(Some)
                .ok_or_else(|| format!("argument `{name}` must be a string const")),
        }
    }
}

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

/// The output types of `op` given its bound arguments and bracket attributes.
pub fn infer_outputs(
    op: Op,
    args: &[(&str, Bound<'_>)],
    attrs: &[(String, Literal)],
) -> Res<Vec<Type>> {
    let a = Args { args };
    let attr = |n: &str| attrs.iter().find(|(k, _)| k == n).map(|(_, l)| l);
    let tensor = |t: TensorType| Ok(vec![Type::Tensor(t)]);
    match op {
        Op::Const => attr("val")
            .map(|v| vec![v.ty()])
            .ok_or_else(|| "const needs a `val` attribute".to_string()),
        Op::ConstexprAffineDequantize => {
            let q = attr("quantized_data")
                .ok_or("missing attribute `quantized_data`")?
                .ty();
            let scale = attr("scale").ok_or("missing attribute `scale`")?.ty();
            attr("zero_point").ok_or("missing attribute `zero_point`")?;
            let axis = attr("axis")
                .and_then(Literal::as_f64)
                .ok_or("missing int32 attribute `axis`")?;
            let q = q
                .as_tensor()
                .filter(|t| matches!(t.dtype, DType::Int8 | DType::Uint8))
                .ok_or("`quantized_data` must be an int8 or uint8 tensor")?;
            normalize_axis(axis as i64, q.rank())?;
            if !scale.dtype().is_float() {
                return Err("`scale` must be fp16 or fp32".into());
            }
            tensor(TensorType::new(scale.dtype(), q.shape.clone()))
        }
        Op::SliceBySize => {
            let x = a.tensor("x")?;
            let begin = a.req_ints("begin")?;
            let size = a.req_ints("size")?;
            if begin.len() != x.rank() || size.len() != x.rank() {
                return Err(format!(
                    "begin and size need {} entries (the rank of x)",
                    x.rank()
                ));
            }
            let mut shape = Vec::with_capacity(x.rank());
            for i in 0..x.rank() {
                let b = dim(begin[i], "begin")?;
                let s = if size[i] == -1 {
                    x.shape[i].checked_sub(b).ok_or("begin beyond the end")?
                } else {
                    dim(size[i], "size")?
                };
                if b + s > x.shape[i] {
                    return Err(format!(
                        "slice [{b}, {}) on axis {i} exceeds its size {}",
                        b + s,
                        x.shape[i]
                    ));
                }
                shape.push(s);
            }
            tensor(TensorType::new(x.dtype, shape))
        }
        Op::SliceByIndex => {
            let x = a.tensor("x")?;
            let plan = SliceByIndexPlan::new(
                &x.shape,
                &a.req_ints("begin")?,
                &a.req_ints("end")?,
                a.ints("stride")?.as_deref(),
                a.ints("begin_mask")?.as_deref(),
                a.ints("end_mask")?.as_deref(),
                a.ints("squeeze_mask")?.as_deref(),
            )?;
            tensor(TensorType::new(x.dtype, plan.output_shape()))
        }
        Op::Reshape => {
            let x = a.tensor("x")?;
            let shape = reshape_target(&x.shape, &a.req_ints("shape")?)?;
            tensor(TensorType::new(x.dtype, shape))
        }
        Op::Transpose => {
            let x = a.tensor("x")?;
            let perm = permutation(&a.req_ints("perm")?, x.rank())?;
            tensor(TensorType::new(
                x.dtype,
                perm.iter().map(|&p| x.shape[p]).collect::<Vec<_>>(),
            ))
        }
        Op::Concat => {
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
            tensor(TensorType::new(first.dtype, shape))
        }
        Op::Split => {
            let x = a.tensor("x")?;
            let axis = normalize_axis(a.int("axis")?.ok_or("missing argument `axis`")?, x.rank())?;
            let sizes = split_sizes(x.shape[axis], a.int("num_splits")?, a.ints("split_sizes")?)?;
            Ok(sizes
                .into_iter()
                .map(|s| {
                    let mut shape = x.shape.clone();
                    shape[axis] = s;
                    Type::Tensor(TensorType::new(x.dtype, shape))
                })
                .collect())
        }
        Op::Matmul => {
            let x = a.tensor("x")?;
            let y = a.tensor("y")?;
            same_dtype(&x, &y)?;
            let shape = matmul_shape(
                &x.shape,
                &y.shape,
                a.bool("transpose_x")?.unwrap_or(false),
                a.bool("transpose_y")?.unwrap_or(false),
            )?;
            tensor(TensorType::new(x.dtype, shape))
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
            tensor(TensorType::new(x.dtype, conv.output_shape()))
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
                if b.shape != [w.shape[0]] {
                    return Err(format!("bias must have shape [{}]", w.shape[0]));
                }
            }
            let mut shape = x.shape.clone();
            *shape.last_mut().ok_or("x must not be a scalar")? = w.shape[0];
            tensor(TensorType::new(x.dtype, shape))
        }
        _ if op.is_binary() => {
            let xa = a.one("x")?;
            let ya = a.one("y")?;
            let (x, y) = (a.tensor("x")?, a.tensor("y")?);
            same_dtype(&x, &y)?;
            let shape = broadcast_shapes(&x.shape, &y.shape)?;
            let dtype = if matches!(op, Op::Greater | Op::Less) {
                DType::Bool
            } else {
                float_only(op, &x)?;
                x.dtype
            };
            let both_scalar = matches!(xa.ty, Type::Scalar(_)) && matches!(ya.ty, Type::Scalar(_));
            Ok(vec![if both_scalar {
                Type::Scalar(dtype)
            } else {
                Type::Tensor(TensorType::new(dtype, shape))
            }])
        }
        _ if op.is_unary() => {
            let x = a.one("x")?;
            float_only(op, &a.tensor("x")?)?;
            if op == Op::Gelu {
                if let Some(mode) = a.string("mode")? {
                    if !matches!(
                        mode,
                        "EXACT" | "TANH_APPROXIMATION" | "SIGMOID_APPROXIMATION"
                    ) {
                        return Err(format!("unknown gelu mode `{mode}`"));
                    }
                }
            }
            a.param("epsilon")?;
            Ok(vec![x.ty.clone()])
        }
        Op::Softmax => {
            let x = a.tensor("x")?;
            float_only(op, &x)?;
            normalize_axis(a.int("axis")?.unwrap_or(-1), x.rank())?;
            tensor(x)
        }
        _ if op.is_reduction() => {
            let x = a.tensor("x")?;
            float_only(op, &x)?;
            let keep = a.bool("keep_dims")?.unwrap_or(false);
            let axes = reduction_axes(a.ints("axes")?.as_deref(), x.rank())?;
            let shape = reduced_shape(&x.shape, &axes, keep);
            tensor(TensorType::new(x.dtype, shape))
        }
        Op::Clip => {
            let x = a.one("x")?;
            float_only(op, &a.tensor("x")?)?;
            a.param("alpha")?.ok_or("missing argument `alpha`")?;
            a.param("beta")?.ok_or("missing argument `beta`")?;
            Ok(vec![x.ty.clone()])
        }
        Op::Cast => {
            let x = a.one("x")?;
            let dtype = parse_dtype(a.string("dtype")?.ok_or("missing argument `dtype`")?)?;
            Ok(vec![match x.ty {
                Type::Scalar(_) => Type::Scalar(dtype),
                Type::Tensor(t) => Type::Tensor(TensorType::new(dtype, t.shape.clone())),
            }])
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
            tensor(TensorType::new(x.dtype, shape))
        }
        Op::ScaledDotProductAttention => {
            let q = a.tensor("query")?;
            let k = a.tensor("key")?;
            let v = a.tensor("value")?;
            same_dtype(&q, &k)?;
            same_dtype(&q, &v)?;
            float_only(op, &q)?;
            let r = q.rank();
            if r < 3 || k.rank() != r || v.rank() != r {
                return Err("query, key and value need the same rank, at least 3".into());
            }
            let (l, e) = (q.shape[r - 2], q.shape[r - 1]);
            let (s, ek) = (k.shape[r - 2], k.shape[r - 1]);
            if ek != e || v.shape[r - 2] != s || q.shape[..r - 2] != k.shape[..r - 2] {
                return Err(format!(
                    "incompatible query {:?}, key {:?}, value {:?}",
                    q.shape, k.shape, v.shape
                ));
            }
            if let Some(m) = a.opt_tensor("attn_mask")? {
                broadcast_shapes(&m.shape, &[l, s])?;
            }
            let mut shape = q.shape.clone();
            shape[r - 1] = v.shape[r - 1];
            tensor(TensorType::new(q.dtype, shape))
        }
        Op::Quantize => {
            let x = a.tensor("input")?;
            float_only(op, &x)?;
            a.param("scale")?.ok_or("missing argument `scale`")?;
            let dtype = parse_dtype(
                a.string("output_dtype")?
                    .ok_or("missing argument `output_dtype`")?,
            )?;
            if !matches!(dtype, DType::Int8 | DType::Uint8) {
                return Err("output_dtype must be int8 or uint8".into());
            }
            tensor(TensorType::new(dtype, x.shape))
        }
        Op::Dequantize => {
            let x = a.tensor("input")?;
            if !matches!(x.dtype, DType::Int8 | DType::Uint8) {
                return Err("dequantize needs an int8 or uint8 input".into());
            }
            let scale = a.param("scale")?.ok_or("missing argument `scale`")?;
            if !scale.ty().dtype().is_float() {
                return Err("`scale` must be fp16 or fp32".into());
            }
            tensor(TensorType::new(scale.ty().dtype(), x.shape))
        }
        _ => Err(format!("no type rule for {op}")),
    }
}
