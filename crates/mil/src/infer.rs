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

/// The numpy broadcast of two shapes.
pub fn broadcast_shapes(a: &[usize], b: &[usize]) -> Res<Vec<usize>> {
    let rank = a.len().max(b.len());
    let mut out = vec![0; rank];
    for i in 0..rank {
        let da = if i + a.len() >= rank {
            a[i + a.len() - rank]
        } else {
            1
        };
        let db = if i + b.len() >= rank {
            b[i + b.len() - rank]
        } else {
            1
        };
        out[i] = match (da, db) {
            (x, y) if x == y => x,
            (1, y) => y,
            (x, 1) => x,
            _ => return Err(format!("shapes {a:?} and {b:?} do not broadcast")),
        };
    }
    Ok(out)
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

fn dim(v: i64, what: &str) -> Res<usize> {
    usize::try_from(v).map_err(|_| format!("{what} must be non-negative, got {v}"))
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

/// The shape `reshape` produces, resolving one `-1`.
pub fn reshape_target(input: &[usize], shape: &[i64]) -> Res<Vec<usize>> {
    let numel: usize = input.iter().product();
    let mut infer_at = None;
    let mut known = 1usize;
    let mut out = Vec::with_capacity(shape.len());
    for (i, &d) in shape.iter().enumerate() {
        if d == -1 {
            if infer_at.replace(i).is_some() {
                return Err("reshape allows only one -1".into());
            }
            out.push(0);
        } else if d <= 0 {
            return Err(format!("reshape dimension {d} must be positive or -1"));
        } else {
            known *= d as usize;
            out.push(d as usize);
        }
    }
    if let Some(i) = infer_at {
        if known == 0 || !numel.is_multiple_of(known) {
            return Err(format!("cannot infer -1 reshaping {input:?} to {shape:?}"));
        }
        out[i] = numel / known;
    } else if known != numel {
        return Err(format!(
            "cannot reshape {input:?} ({numel} elements) to {shape:?} ({known} elements)"
        ));
    }
    Ok(out)
}

/// Checks that `perm` is a permutation of the axes of a rank-`rank` tensor (negative axes allowed).
pub fn permutation(perm: &[i64], rank: usize) -> Res<Vec<usize>> {
    if perm.len() != rank {
        return Err(format!("perm needs {rank} entries, got {}", perm.len()));
    }
    let p = perm
        .iter()
        .map(|&a| normalize_axis(a, rank))
        .collect::<Res<Vec<_>>>()?;
    let mut seen = vec![false; rank];
    for &i in &p {
        if std::mem::replace(&mut seen[i], true) {
            return Err(format!("perm {perm:?} repeats axis {i}"));
        }
    }
    Ok(p)
}

/// The sizes `split` cuts an axis of length `len` into.
pub fn split_sizes(len: usize, num: Option<i64>, sizes: Option<Vec<i64>>) -> Res<Vec<usize>> {
    match (num, sizes) {
        (_, Some(s)) => {
            let s = s
                .into_iter()
                .map(|v| dim(v, "split size"))
                .collect::<Res<Vec<_>>>()?;
            if s.iter().sum::<usize>() != len {
                return Err(format!(
                    "split_sizes {s:?} do not sum to the axis size {len}"
                ));
            }
            Ok(s)
        }
        (Some(n), None) if n > 0 && len.is_multiple_of(n as usize) => {
            Ok(vec![len / n as usize; n as usize])
        }
        (Some(n), None) => Err(format!(
            "num_splits {n} does not divide the axis size {len}"
        )),
        (None, None) => Err("split needs num_splits or split_sizes".into()),
    }
}

/// The output shape of `matmul` with numpy semantics, batch broadcasting and transposes.
pub fn matmul_shape(x: &[usize], y: &[usize], tx: bool, ty: bool) -> Res<Vec<usize>> {
    if x.is_empty() || y.is_empty() {
        return Err("matmul operands must have rank at least 1".into());
    }
    let xs: Vec<usize> = if x.len() == 1 {
        vec![1, x[0]]
    } else {
        x.to_vec()
    };
    let ys: Vec<usize> = if y.len() == 1 {
        vec![y[0], 1]
    } else {
        y.to_vec()
    };
    let (xr, yr) = (xs.len(), ys.len());
    let (m, kx) = if tx && x.len() > 1 {
        (xs[xr - 1], xs[xr - 2])
    } else {
        (xs[xr - 2], xs[xr - 1])
    };
    let (ky, n) = if ty && y.len() > 1 {
        (ys[yr - 1], ys[yr - 2])
    } else {
        (ys[yr - 2], ys[yr - 1])
    };
    if kx != ky {
        return Err(format!(
            "matmul inner dimensions differ: x {x:?} (transpose_x={tx}) and y {y:?} (transpose_y={ty})"
        ));
    }
    let mut out = broadcast_shapes(&xs[..xr - 2], &ys[..yr - 2])?;
    if x.len() > 1 {
        out.push(m);
    }
    if y.len() > 1 {
        out.push(n);
    }
    Ok(out)
}

/// Normalised, sorted, de-duplicated reduction axes (all axes when `None`).
pub fn reduction_axes(axes: Option<&[i64]>, rank: usize) -> Res<Vec<usize>> {
    let mut out = match axes {
        None => (0..rank).collect(),
        Some(a) => a
            .iter()
            .map(|&x| normalize_axis(x, rank))
            .collect::<Res<Vec<_>>>()?,
    };
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

/// The shape left after reducing `axes`.
pub fn reduced_shape(shape: &[usize], axes: &[usize], keep_dims: bool) -> Vec<usize> {
    shape
        .iter()
        .enumerate()
        .filter_map(|(i, &d)| match (axes.contains(&i), keep_dims) {
            (false, _) => Some(d),
            (true, true) => Some(1),
            (true, false) => None,
        })
        .collect()
}

/// Resolved geometry of a `conv`: everything the interpreter needs, computed once.
#[derive(Clone, Debug, PartialEq)]
pub struct ConvPlan {
    pub batch: usize,
    pub in_channels: usize,
    pub out_channels: usize,
    pub groups: usize,
    pub input: Vec<usize>,
    pub kernel: Vec<usize>,
    pub strides: Vec<usize>,
    pub dilations: Vec<usize>,
    /// Padding before and after each spatial axis.
    pub pad: Vec<(usize, usize)>,
    pub output: Vec<usize>,
}

impl ConvPlan {
    /// Resolves conv parameters for input `x` `[N, Cin, *spatial]` and weight `[Cout, Cin/groups, *k]`.
    pub fn new(
        x: &[usize],
        w: &[usize],
        strides: Option<Vec<i64>>,
        pad_type: Option<&str>,
        pad: Option<Vec<i64>>,
        dilations: Option<Vec<i64>>,
        groups: Option<i64>,
    ) -> Res<ConvPlan> {
        if x.len() < 3 || w.len() != x.len() {
            return Err(format!(
                "conv needs x [N, C, *spatial] and weight [Cout, Cin/groups, *kernel] of the same rank; got {x:?} and {w:?}"
            ));
        }
        let ns = x.len() - 2;
        let groups = dim(groups.unwrap_or(1), "groups")?;
        let list = |v: Option<Vec<i64>>, what: &str| -> Res<Vec<usize>> {
            match v {
                None => Ok(vec![1; ns]),
                Some(v) if v.len() == ns => v.into_iter().map(|d| dim(d, what)).collect(),
                Some(v) => Err(format!("{what} needs {ns} entries, got {}", v.len())),
            }
        };
        let strides = list(strides, "strides")?;
        let dilations = list(dilations, "dilations")?;
        if strides.contains(&0) || dilations.contains(&0) || groups == 0 {
            return Err("strides, dilations and groups must be at least 1".into());
        }
        let (cin, cout) = (x[1], w[0]);
        if cin % groups != 0 || cout % groups != 0 || w[1] * groups != cin {
            return Err(format!(
                "weight {w:?} does not match {cin} input channels in {groups} groups (weight must be [Cout, Cin/groups, ...])"
            ));
        }
        let input = x[2..].to_vec();
        let kernel = w[2..].to_vec();
        let eff: Vec<usize> = (0..ns)
            .map(|i| dilations[i] * (kernel[i] - 1) + 1)
            .collect();
        let pad: Vec<(usize, usize)> = match pad_type.unwrap_or("valid") {
            "valid" => vec![(0, 0); ns],
            "custom" => {
                let p = pad.ok_or("pad_type custom needs `pad`")?;
                if p.len() != 2 * ns {
                    return Err(format!("pad needs {} entries", 2 * ns));
                }
                (0..ns)
                    .map(|i| Ok((dim(p[2 * i], "pad")?, dim(p[2 * i + 1], "pad")?)))
                    .collect::<Res<_>>()?
            }
            "same" | "same_lower" => (0..ns)
                .map(|i| {
                    let out = input[i].div_ceil(strides[i]);
                    let total = ((out - 1) * strides[i] + eff[i]).saturating_sub(input[i]);
                    if pad_type == Some("same") {
                        (total / 2, total - total / 2)
                    } else {
                        (total - total / 2, total / 2)
                    }
                })
                .collect(),
            other => {
                return Err(format!(
                    "unknown pad_type `{other}` (valid, same, same_lower, custom)"
                ))
            }
        };
        let mut output = Vec::with_capacity(ns);
        for i in 0..ns {
            let padded = input[i] + pad[i].0 + pad[i].1;
            if padded < eff[i] {
                return Err(format!(
                    "kernel extent {} exceeds padded input {padded} on spatial axis {i}",
                    eff[i]
                ));
            }
            output.push((padded - eff[i]) / strides[i] + 1);
        }
        Ok(ConvPlan {
            batch: x[0],
            in_channels: cin,
            out_channels: cout,
            groups,
            input,
            kernel,
            strides,
            dilations,
            pad,
            output,
        })
    }

    /// `[N, Cout, *output spatial]`.
    pub fn output_shape(&self) -> Vec<usize> {
        let mut s = vec![self.batch, self.out_channels];
        s.extend(&self.output);
        s
    }
}

/// Resolved `slice_by_index`: per-axis start, step and count, and which axes are squeezed.
#[derive(Clone, Debug, PartialEq)]
pub struct SliceByIndexPlan {
    pub begin: Vec<usize>,
    pub stride: Vec<usize>,
    pub count: Vec<usize>,
    pub squeeze: Vec<bool>,
}

impl SliceByIndexPlan {
    /// Resolves masks and negative indices. Only positive strides are supported.
    pub fn new(
        shape: &[usize],
        begin: &[i64],
        end: &[i64],
        stride: Option<&[i64]>,
        begin_mask: Option<&[i64]>,
        end_mask: Option<&[i64]>,
        squeeze_mask: Option<&[i64]>,
    ) -> Res<SliceByIndexPlan> {
        let r = shape.len();
        let check = |v: Option<&[i64]>, what: &str| -> Res<()> {
            match v {
                Some(v) if v.len() != r => Err(format!("{what} needs {r} entries")),
                _ => Ok(()),
            }
        };
        if begin.len() != r || end.len() != r {
            return Err(format!("begin and end need {r} entries (the rank of x)"));
        }
        check(stride, "stride")?;
        check(begin_mask, "begin_mask")?;
        check(end_mask, "end_mask")?;
        check(squeeze_mask, "squeeze_mask")?;
        let flag = |v: Option<&[i64]>, i: usize| v.is_some_and(|v| v[i] != 0);
        let mut plan = SliceByIndexPlan {
            begin: vec![],
            stride: vec![],
            count: vec![],
            squeeze: vec![],
        };
        for i in 0..r {
            let n = shape[i] as i64;
            let s = stride.map_or(1, |s| s[i]);
            if s <= 0 {
                return Err(format!(
                    "stride {s} on axis {i}: only positive strides are supported"
                ));
            }
            let clamp = |v: i64| (if v < 0 { v + n } else { v }).clamp(0, n);
            let b = if flag(begin_mask, i) {
                0
            } else {
                clamp(begin[i])
            };
            let e = if flag(end_mask, i) { n } else { clamp(end[i]) };
            let count = if e > b { ((e - b) + s - 1) / s } else { 0 } as usize;
            let sq = flag(squeeze_mask, i);
            if sq && count != 1 {
                return Err(format!("squeeze_mask on axis {i} needs a slice of size 1"));
            }
            if count == 0 {
                return Err(format!("empty slice on axis {i}"));
            }
            plan.begin.push(b as usize);
            plan.stride.push(s as usize);
            plan.count.push(count);
            plan.squeeze.push(sq);
        }
        Ok(plan)
    }

    /// The output shape, squeezed axes removed.
    pub fn output_shape(&self) -> Vec<usize> {
        self.count
            .iter()
            .zip(&self.squeeze)
            .filter(|(_, &s)| !s)
            .map(|(&c, _)| c)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broadcast_follows_numpy() {
        assert_eq!(
            broadcast_shapes(&[1, 4, 1, 8], &[4, 3, 1]).unwrap(),
            vec![1, 4, 3, 8]
        );
        assert_eq!(broadcast_shapes(&[], &[2, 2]).unwrap(), vec![2, 2]);
        assert!(broadcast_shapes(&[2, 3], &[3, 2]).is_err());
    }

    #[test]
    fn matmul_shapes_follow_numpy_with_transposes() {
        assert_eq!(
            matmul_shape(&[1, 1, 32, 64], &[1, 1, 64, 96], false, false).unwrap(),
            vec![1, 1, 32, 96]
        );
        assert_eq!(
            matmul_shape(&[2, 64, 32], &[96, 64], true, true).unwrap(),
            vec![2, 32, 96]
        );
        assert_eq!(matmul_shape(&[5], &[5, 3], false, false).unwrap(), vec![3]);
        assert!(matmul_shape(&[4, 5], &[4, 5], false, false).is_err());
    }

    #[test]
    fn reshape_infers_one_dimension() {
        assert_eq!(
            reshape_target(&[1, 64, 1, 32], &[1, 1, 64, -1]).unwrap(),
            vec![1, 1, 64, 32]
        );
        assert!(reshape_target(&[6], &[-1, -1]).is_err());
        assert!(reshape_target(&[6], &[4]).is_err());
    }

    #[test]
    fn conv_output_sizes_match_the_formula() {
        let p = ConvPlan::new(
            &[1, 4, 10, 9],
            &[8, 2, 3, 3],
            Some(vec![2, 1]),
            Some("valid"),
            None,
            Some(vec![1, 2]),
            Some(2),
        )
        .unwrap();
        // valid: (in - dil*(k-1) - 1) / stride + 1
        assert_eq!(p.output_shape(), vec![1, 8, (10 - 2 - 1) / 2 + 1, 9 - 4]);
        let s = ConvPlan::new(
            &[1, 4, 7, 7],
            &[4, 4, 3, 3],
            Some(vec![2, 2]),
            Some("same"),
            None,
            None,
            None,
        )
        .unwrap();
        assert_eq!(s.output, vec![4, 4]);
    }

    #[test]
    fn slice_by_index_resolves_masks_and_negatives() {
        let p = SliceByIndexPlan::new(
            &[4, 10],
            &[1, -4],
            &[0, 10],
            Some(&[1, 2]),
            Some(&[0, 0]),
            Some(&[1, 0]),
            None,
        )
        .unwrap();
        assert_eq!(p.begin, vec![1, 6]);
        assert_eq!(p.count, vec![3, 2]);
    }
}
