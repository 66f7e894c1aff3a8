//! The kernel builder: write MIL in Rust that reads like the math.
//!
//! ```
//! use anetrain_mil::{Builder, DType};
//! let mut b = Builder::new();
//! let x = b.input("x", DType::Fp16, [1, 64, 1, 32]).unwrap();
//! let g = b.sigmoid(x).unwrap();
//! let y = b.mul(x, g).unwrap();
//! b.output(y, "y").unwrap();
//! let bundle = b.finish().unwrap();
//! assert!(anetrain_mil::print_program(&bundle.program).contains("sigmoid"));
//! ```
//!
//! Every op is typed and shape-checked when it is added (through [`crate::infer`]); parameters
//! become named `const` values (deduplicated), as the ANE compiler requires; names are generated
//! unique; ops that do not reach an output are dropped; BLOBFILE weights are written into
//! [`WeightFiles`] as the program references them.

use crate::blob::{BlobWriter, WeightFiles};
use crate::error::{MilError, Result};
use crate::infer::{infer_outputs, ArgInfo, Bound};
use crate::ops::Op;
use crate::program::{Argument, Function, Operation, Output, Program};
use crate::types::{DType, Literal, Scalar, TensorData, TensorType, Type};
use half::f16;
use std::collections::{BTreeMap, HashMap, HashSet};

/// A value in a program under construction. Cheap to copy; only meaningful with its builder.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Var(usize);

/// A finished kernel: the program and the weight files its BLOBFILE constants reference.
#[derive(Clone, Debug, PartialEq)]
pub struct Bundle {
    pub program: Program,
    pub weights: WeightFiles,
}

/// Geometry of a convolution; `Default` is the 1×1, stride 1, unpadded, ungrouped case.
#[derive(Clone, Debug, PartialEq)]
pub struct ConvOptions {
    pub strides: [usize; 2],
    pub dilations: [usize; 2],
    /// `[top, bottom, left, right]`, used with `pad_type = "custom"`.
    pub pad: [usize; 4],
    pub groups: usize,
}

impl Default for ConvOptions {
    fn default() -> ConvOptions {
        ConvOptions {
            strides: [1, 1],
            dilations: [1, 1],
            pad: [0, 0, 0, 0],
            groups: 1,
        }
    }
}

enum NodeArg {
    One(Var),
    Tuple(Vec<Var>),
}

struct Node {
    op: Op,
    args: Vec<(&'static str, NodeArg)>,
    attrs: Vec<(String, Literal)>,
    outputs: Vec<Var>,
}

struct ValueInfo {
    name: String,
    ty: Type,
    literal: Option<Literal>,
}

/// Builds one `main` function (see the module docs).
pub struct Builder {
    values: Vec<ValueInfo>,
    inputs: Vec<(Var, TensorType)>,
    nodes: Vec<Node>,
    outputs: Vec<Var>,
    names: HashSet<String>,
    counters: HashMap<String, usize>,
    consts: HashMap<String, Var>,
    blobs: BTreeMap<String, BlobWriter>,
}

impl Default for Builder {
    fn default() -> Self {
        Builder::new()
    }
}

fn type_err(op: Op, message: impl Into<String>) -> MilError {
    MilError::Type {
        op: op.name().to_string(),
        label: "(new)".to_string(),
        message: message.into(),
    }
}

fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

impl Builder {
    pub fn new() -> Builder {
        Builder {
            values: Vec::new(),
            inputs: Vec::new(),
            nodes: Vec::new(),
            outputs: Vec::new(),
            names: HashSet::new(),
            counters: HashMap::new(),
            consts: HashMap::new(),
            blobs: BTreeMap::new(),
        }
    }

    /// The type of `v`.
    pub fn ty(&self, v: Var) -> &Type {
        &self.values[v.0].ty
    }

    /// The shape of `v` (empty for scalars).
    pub fn shape(&self, v: Var) -> &[usize] {
        self.values[v.0].ty.shape()
    }

    /// The element type of `v`.
    pub fn dtype(&self, v: Var) -> DType {
        self.values[v.0].ty.dtype()
    }

    fn fresh_name(&mut self, base: &str) -> String {
        loop {
            let n = self.counters.entry(base.to_string()).or_insert(0);
            let name = format!("{base}_{n}");
            *n += 1;
            if self.names.insert(name.clone()) {
                return name;
            }
        }
    }

    fn claim_name(&mut self, name: &str) -> Result<()> {
        if !is_identifier(name) {
            return Err(MilError::Program(format!(
                "`{name}` is not a MIL identifier ([A-Za-z_][A-Za-z0-9_]*)"
            )));
        }
        if !self.names.insert(name.to_string()) {
            return Err(MilError::Program(format!(
                "the name `{name}` is already used"
            )));
        }
        Ok(())
    }

    fn new_value(&mut self, name: String, ty: Type, literal: Option<Literal>) -> Var {
        self.values.push(ValueInfo { name, ty, literal });
        Var(self.values.len() - 1)
    }

    /// Declares a function input.
    pub fn input(&mut self, name: &str, dtype: DType, shape: impl Into<Vec<usize>>) -> Result<Var> {
        self.claim_name(name)?;
        let ty = TensorType::new(dtype, shape);
        let v = self.new_value(name.to_string(), Type::Tensor(ty.clone()), None);
        self.inputs.push((v, ty));
        Ok(v)
    }

    /// Returns `v` from the function under the name `name` (renaming it).
    pub fn output(&mut self, v: Var, name: &str) -> Result<()> {
        if self.inputs.iter().any(|(i, _)| *i == v) || self.outputs.contains(&v) {
            return Err(MilError::Program(format!(
                "cannot return `{}` as `{name}`: inputs and already returned values cannot be returned again",
                self.values[v.0].name
            )));
        }
        if self.values[v.0].ty.as_tensor().is_none() {
            return Err(MilError::Program(format!(
                "output `{name}` must be a tensor"
            )));
        }
        self.rename(v, name)?;
        self.outputs.push(v);
        Ok(())
    }

    /// Gives `v` a readable name (it appears in the MIL text and in error messages).
    pub fn rename(&mut self, v: Var, name: &str) -> Result<()> {
        if self.values[v.0].name == name {
            return Ok(());
        }
        self.claim_name(name)?;
        let old = std::mem::replace(&mut self.values[v.0].name, name.to_string());
        self.names.remove(&old);
        Ok(())
    }

    /// A constant (deduplicated: the same literal always yields the same value).
    pub fn constant(&mut self, literal: Literal) -> Var {
        let key = format!("{literal:?}");
        if let Some(&v) = self.consts.get(&key) {
            return v;
        }
        let name = self.fresh_name("c");
        let v = self.new_value(name, literal.ty(), Some(literal.clone()));
        self.nodes.push(Node {
            op: Op::Const,
            args: vec![],
            attrs: vec![("val".to_string(), literal)],
            outputs: vec![v],
        });
        self.consts.insert(key, v);
        v
    }

    /// A float scalar constant of dtype `dtype` (fp16 values round to nearest even).
    pub fn scalar(&mut self, dtype: DType, value: f32) -> Var {
        let s = match dtype {
            DType::Fp32 => Scalar::Fp32(value),
            _ => Scalar::Fp16(f16::from_f32(value)),
        };
        self.constant(Literal::Scalar(s))
    }

    fn ints(&mut self, values: &[i64]) -> Var {
        let v: Vec<i32> = values.iter().map(|&x| x as i32).collect();
        self.constant(Literal::int32_tensor(&v))
    }

    fn usizes(&mut self, values: &[usize]) -> Var {
        let v: Vec<i64> = values.iter().map(|&x| x as i64).collect();
        self.ints(&v)
    }

    fn int(&mut self, value: i64) -> Var {
        self.constant(Literal::int32(value as i32))
    }

    fn flag(&mut self, value: bool) -> Var {
        self.constant(Literal::bool(value))
    }

    fn string(&mut self, value: &str) -> Var {
        self.constant(Literal::string(value))
    }

    /// An inline tensor constant (use for small tables; large weights go to [`Builder::weight`]).
    pub fn tensor_constant(
        &mut self,
        dtype: DType,
        shape: impl Into<Vec<usize>>,
        values: &[f32],
    ) -> Result<Var> {
        let ty = TensorType::new(dtype, shape);
        if ty.numel() != values.len() {
            return Err(MilError::Program(format!(
                "constant of shape {:?} needs {} values, got {}",
                ty.shape,
                ty.numel(),
                values.len()
            )));
        }
        let data = match dtype {
            DType::Fp16 => TensorData::Fp16(values.iter().map(|&x| f16::from_f32(x)).collect()),
            DType::Fp32 => TensorData::Fp32(values.to_vec()),
            _ => {
                return Err(MilError::Program(format!(
                    "tensor_constant takes fp16 or fp32, not {dtype}"
                )))
            }
        };
        Ok(self.constant(Literal::Tensor { ty, data }))
    }

    /// A weight stored in the BLOBFILE `@model_path/weights/<file>.bin` and loaded by a `const`.
    pub fn weight(
        &mut self,
        file: &str,
        dtype: DType,
        shape: impl Into<Vec<usize>>,
        values: &[f32],
    ) -> Result<Var> {
        let ty = TensorType::new(dtype, shape);
        if ty.numel() != values.len() {
            return Err(MilError::Program(format!(
                "weight `{file}` of shape {:?} needs {} values, got {}",
                ty.shape,
                ty.numel(),
                values.len()
            )));
        }
        let path = format!("@model_path/weights/{file}.bin");
        let writer = self.blobs.entry(path.clone()).or_default();
        let offset = match dtype {
            DType::Fp16 => writer.add_fp16(values),
            DType::Fp32 => writer.add_fp32(values),
            _ => {
                return Err(MilError::Program(format!(
                    "weight `{file}`: only fp16 and fp32 weights are stored from f32 values"
                )))
            }
        };
        Ok(self.constant(Literal::Blob { ty, path, offset }))
    }

    /// An int8 weight `w ≈ q · scale[axis]` folded at compile time by `constexpr_affine_dequantize`.
    pub fn int8_weight(
        &mut self,
        file: &str,
        shape: impl Into<Vec<usize>>,
        q: &[i8],
        scale: &[f32],
        axis: usize,
        dtype: DType,
    ) -> Result<Var> {
        let shape = shape.into();
        let qty = TensorType::new(DType::Int8, shape.clone());
        if qty.numel() != q.len()
            || axis >= shape.len()
            || (scale.len() != 1 && scale.len() != shape[axis])
        {
            return Err(MilError::Program(format!(
                "int8 weight `{file}`: {} values for shape {shape:?} and {} scales on axis {axis} do not fit",
                q.len(),
                scale.len()
            )));
        }
        let path = format!("@model_path/weights/{file}.bin");
        let offset = self.blobs.entry(path.clone()).or_default().add_int8(q);
        let scale_lit = if scale.len() == 1 {
            match dtype {
                DType::Fp32 => Literal::Scalar(Scalar::Fp32(scale[0])),
                _ => Literal::Scalar(Scalar::Fp16(f16::from_f32(scale[0]))),
            }
        } else {
            let data = match dtype {
                DType::Fp32 => TensorData::Fp32(scale.to_vec()),
                _ => TensorData::Fp16(scale.iter().map(|&x| f16::from_f32(x)).collect()),
            };
            Literal::Tensor {
                ty: TensorType::new(dtype, [scale.len()]),
                data,
            }
        };
        let attrs = vec![
            ("axis".to_string(), Literal::int32(axis as i32)),
            (
                "quantized_data".to_string(),
                Literal::Blob {
                    ty: qty,
                    path,
                    offset,
                },
            ),
            ("scale".to_string(), scale_lit),
            ("zero_point".to_string(), Literal::Scalar(Scalar::Int8(0))),
        ];
        let outs = self.push(Op::ConstexprAffineDequantize, vec![], attrs)?;
        Ok(outs[0])
    }

    /// Adds an op after type-checking it; returns its outputs.
    fn push(
        &mut self,
        op: Op,
        mut args: Vec<(&'static str, NodeArg)>,
        attrs: Vec<(String, Literal)>,
    ) -> Result<Vec<Var>> {
        args.sort_by_key(|(n, _)| *n);
        let info = |v: &Var| ArgInfo {
            ty: &self.values[v.0].ty,
            value: self.values[v.0].literal.as_ref(),
        };
        let bound: Vec<(&str, Bound<'_>)> = args
            .iter()
            .map(|(n, a)| {
                (
                    *n,
                    match a {
                        NodeArg::One(v) => Bound::One(info(v)),
                        NodeArg::Tuple(vs) => Bound::Tuple(vs.iter().map(info).collect()),
                    },
                )
            })
            .collect();
        let types = infer_outputs(op, &bound, &attrs).map_err(|m| type_err(op, m))?;
        let base = op.name().to_string();
        let outputs: Vec<Var> = types
            .into_iter()
            .map(|ty| {
                let name = self.fresh_name(&base);
                self.new_value(name, ty, None)
            })
            .collect();
        self.nodes.push(Node {
            op,
            args,
            attrs,
            outputs: outputs.clone(),
        });
        Ok(outputs)
    }

    fn push1(&mut self, op: Op, args: Vec<(&'static str, NodeArg)>) -> Result<Var> {
        Ok(self.push(op, args, vec![])?[0])
    }

    fn unary(&mut self, op: Op, x: Var) -> Result<Var> {
        self.push1(op, vec![("x", NodeArg::One(x))])
    }

    fn binary(&mut self, op: Op, x: Var, y: Var) -> Result<Var> {
        self.push1(op, vec![("x", NodeArg::One(x)), ("y", NodeArg::One(y))])
    }

    /// `x[begin .. begin + size]` on every axis.
    pub fn slice(&mut self, x: Var, begin: &[usize], size: &[usize]) -> Result<Var> {
        let (b, s) = (self.usizes(begin), self.usizes(size));
        self.push1(
            Op::SliceBySize,
            vec![
                ("x", NodeArg::One(x)),
                ("begin", NodeArg::One(b)),
                ("size", NodeArg::One(s)),
            ],
        )
    }

    /// `x[begin:end:stride]` on every axis (`slice_by_index`, positive strides).
    pub fn slice_by_index(
        &mut self,
        x: Var,
        begin: &[usize],
        end: &[usize],
        stride: &[usize],
    ) -> Result<Var> {
        let (b, e, s) = (self.usizes(begin), self.usizes(end), self.usizes(stride));
        self.push1(
            Op::SliceByIndex,
            vec![
                ("x", NodeArg::One(x)),
                ("begin", NodeArg::One(b)),
                ("end", NodeArg::One(e)),
                ("stride", NodeArg::One(s)),
            ],
        )
    }

    /// `x` viewed with a new shape of the same size.
    pub fn reshape(&mut self, x: Var, shape: &[usize]) -> Result<Var> {
        let s = self.usizes(shape);
        self.push1(
            Op::Reshape,
            vec![("x", NodeArg::One(x)), ("shape", NodeArg::One(s))],
        )
    }

    /// Axes of `x` permuted: output axis i is input axis `perm[i]`.
    pub fn transpose(&mut self, x: Var, perm: &[usize]) -> Result<Var> {
        let p = self.usizes(perm);
        self.push1(
            Op::Transpose,
            vec![("x", NodeArg::One(x)), ("perm", NodeArg::One(p))],
        )
    }

    /// Swaps the last two axes.
    pub fn transpose_last(&mut self, x: Var) -> Result<Var> {
        let r = self.shape(x).len();
        if r < 2 {
            return Err(type_err(Op::Transpose, "transpose_last needs rank >= 2"));
        }
        let mut perm: Vec<usize> = (0..r).collect();
        perm.swap(r - 1, r - 2);
        self.transpose(x, &perm)
    }

    /// Values joined along `axis` (negative counts from the end).
    pub fn concat(&mut self, values: &[Var], axis: i64) -> Result<Var> {
        let (a, i) = (self.int(axis), self.flag(false));
        self.push1(
            Op::Concat,
            vec![
                ("values", NodeArg::Tuple(values.to_vec())),
                ("axis", NodeArg::One(a)),
                ("interleave", NodeArg::One(i)),
            ],
        )
    }

    /// `x` cut along `axis` into pieces of the given sizes.
    pub fn split(&mut self, x: Var, sizes: &[usize], axis: i64) -> Result<Vec<Var>> {
        let (s, a) = (self.usizes(sizes), self.int(axis));
        self.push(
            Op::Split,
            vec![
                ("x", NodeArg::One(x)),
                ("split_sizes", NodeArg::One(s)),
                ("axis", NodeArg::One(a)),
            ],
            vec![],
        )
    }

    /// `x @ y` over the last two axes (batch axes broadcast).
    pub fn matmul(&mut self, x: Var, y: Var) -> Result<Var> {
        self.matmul_t(x, y, false, false)
    }

    /// `op(x) @ op(y)` where `op` transposes the last two axes when its flag is set.
    pub fn matmul_t(
        &mut self,
        x: Var,
        y: Var,
        transpose_x: bool,
        transpose_y: bool,
    ) -> Result<Var> {
        let (tx, ty) = (self.flag(transpose_x), self.flag(transpose_y));
        self.push1(
            Op::Matmul,
            vec![
                ("x", NodeArg::One(x)),
                ("y", NodeArg::One(y)),
                ("transpose_x", NodeArg::One(tx)),
                ("transpose_y", NodeArg::One(ty)),
            ],
        )
    }

    /// 2-D convolution of `x` `[N, Cin, H, W]` with `weight` `[Cout, Cin/groups, kH, kW]` (no bias).
    pub fn conv(&mut self, x: Var, weight: Var, options: &ConvOptions) -> Result<Var> {
        let strides = self.usizes(&options.strides);
        let dilations = self.usizes(&options.dilations);
        let pad = self.usizes(&options.pad);
        let pad_type = self.string(if options.pad == [0; 4] {
            "valid"
        } else {
            "custom"
        });
        let groups = self.int(options.groups as i64);
        self.push1(
            Op::Conv,
            vec![
                ("x", NodeArg::One(x)),
                ("weight", NodeArg::One(weight)),
                ("strides", NodeArg::One(strides)),
                ("pad_type", NodeArg::One(pad_type)),
                ("pad", NodeArg::One(pad)),
                ("dilations", NodeArg::One(dilations)),
                ("groups", NodeArg::One(groups)),
            ],
        )
    }

    /// `x W^T + b` over the last axis of `x`, with `weight` `[out, in]`.
    pub fn linear(&mut self, x: Var, weight: Var, bias: Option<Var>) -> Result<Var> {
        let mut args = vec![("x", NodeArg::One(x)), ("weight", NodeArg::One(weight))];
        if let Some(b) = bias {
            args.push(("bias", NodeArg::One(b)));
        }
        self.push1(Op::Linear, args)
    }

    /// `x + y` (broadcasting).
    pub fn add(&mut self, x: Var, y: Var) -> Result<Var> {
        self.binary(Op::Add, x, y)
    }

    /// `x - y` (broadcasting).
    pub fn sub(&mut self, x: Var, y: Var) -> Result<Var> {
        self.binary(Op::Sub, x, y)
    }

    /// `x * y` (broadcasting).
    pub fn mul(&mut self, x: Var, y: Var) -> Result<Var> {
        self.binary(Op::Mul, x, y)
    }

    /// `x / y` (broadcasting).
    pub fn div(&mut self, x: Var, y: Var) -> Result<Var> {
        self.binary(Op::RealDiv, x, y)
    }

    /// `x ^ y` (broadcasting).
    pub fn pow(&mut self, x: Var, y: Var) -> Result<Var> {
        self.binary(Op::Pow, x, y)
    }

    /// `x > y` as bool.
    pub fn greater(&mut self, x: Var, y: Var) -> Result<Var> {
        self.binary(Op::Greater, x, y)
    }

    /// `x < y` as bool.
    pub fn less(&mut self, x: Var, y: Var) -> Result<Var> {
        self.binary(Op::Less, x, y)
    }

    /// `x * s` for a scalar `s` in `x`'s dtype.
    pub fn scale(&mut self, x: Var, s: f32) -> Result<Var> {
        let c = self.scalar(self.dtype(x), s);
        self.mul(x, c)
    }

    /// `x + s` for a scalar `s` in `x`'s dtype.
    pub fn add_scalar(&mut self, x: Var, s: f32) -> Result<Var> {
        let c = self.scalar(self.dtype(x), s);
        self.add(x, c)
    }

    pub fn sqrt(&mut self, x: Var) -> Result<Var> {
        self.unary(Op::Sqrt, x)
    }

    pub fn rsqrt(&mut self, x: Var) -> Result<Var> {
        self.unary(Op::Rsqrt, x)
    }

    pub fn exp(&mut self, x: Var) -> Result<Var> {
        self.unary(Op::Exp, x)
    }

    pub fn log(&mut self, x: Var) -> Result<Var> {
        self.unary(Op::Log, x)
    }

    pub fn tanh(&mut self, x: Var) -> Result<Var> {
        self.unary(Op::Tanh, x)
    }

    pub fn sigmoid(&mut self, x: Var) -> Result<Var> {
        self.unary(Op::Sigmoid, x)
    }

    pub fn silu(&mut self, x: Var) -> Result<Var> {
        self.unary(Op::Silu, x)
    }

    pub fn relu(&mut self, x: Var) -> Result<Var> {
        self.unary(Op::Relu, x)
    }

    /// GELU with `mode` `EXACT`, `TANH_APPROXIMATION` or `SIGMOID_APPROXIMATION`.
    pub fn gelu(&mut self, x: Var, mode: &str) -> Result<Var> {
        let m = self.string(mode);
        self.push1(
            Op::Gelu,
            vec![("x", NodeArg::One(x)), ("mode", NodeArg::One(m))],
        )
    }

    /// Softmax along `axis`.
    pub fn softmax(&mut self, x: Var, axis: i64) -> Result<Var> {
        let a = self.int(axis);
        self.push1(
            Op::Softmax,
            vec![("x", NodeArg::One(x)), ("axis", NodeArg::One(a))],
        )
    }

    fn reduce(&mut self, op: Op, x: Var, axes: &[i64], keep_dims: bool) -> Result<Var> {
        let (a, k) = (self.ints(axes), self.flag(keep_dims));
        self.push1(
            op,
            vec![
                ("x", NodeArg::One(x)),
                ("axes", NodeArg::One(a)),
                ("keep_dims", NodeArg::One(k)),
            ],
        )
    }

    /// Sum over `axes`.
    pub fn reduce_sum(&mut self, x: Var, axes: &[i64], keep_dims: bool) -> Result<Var> {
        self.reduce(Op::ReduceSum, x, axes, keep_dims)
    }

    /// Mean over `axes`.
    pub fn reduce_mean(&mut self, x: Var, axes: &[i64], keep_dims: bool) -> Result<Var> {
        self.reduce(Op::ReduceMean, x, axes, keep_dims)
    }

    /// Maximum over `axes`.
    pub fn reduce_max(&mut self, x: Var, axes: &[i64], keep_dims: bool) -> Result<Var> {
        self.reduce(Op::ReduceMax, x, axes, keep_dims)
    }

    /// `x` clamped to `[lo, hi]`.
    pub fn clip(&mut self, x: Var, lo: f32, hi: f32) -> Result<Var> {
        let dt = self.dtype(x);
        let (a, b) = (self.scalar(dt, lo), self.scalar(dt, hi));
        self.push1(
            Op::Clip,
            vec![
                ("x", NodeArg::One(x)),
                ("alpha", NodeArg::One(a)),
                ("beta", NodeArg::One(b)),
            ],
        )
    }

    /// `x` converted to `dtype`.
    pub fn cast(&mut self, x: Var, dtype: DType) -> Result<Var> {
        let d = self.string(dtype.name());
        self.push1(
            Op::Cast,
            vec![("x", NodeArg::One(x)), ("dtype", NodeArg::One(d))],
        )
    }

    /// `cond ? a : b` elementwise (broadcasting).
    pub fn select(&mut self, cond: Var, a: Var, b: Var) -> Result<Var> {
        self.push1(
            Op::Select,
            vec![
                ("cond", NodeArg::One(cond)),
                ("a", NodeArg::One(a)),
                ("b", NodeArg::One(b)),
            ],
        )
    }

    /// `softmax(q kᵀ / √d + mask) v`. Reference semantics only: the ANE ignores the mask.
    pub fn scaled_dot_product_attention(
        &mut self,
        q: Var,
        k: Var,
        v: Var,
        mask: Option<Var>,
    ) -> Result<Var> {
        let mut args = vec![
            ("query", NodeArg::One(q)),
            ("key", NodeArg::One(k)),
            ("value", NodeArg::One(v)),
        ];
        if let Some(m) = mask {
            args.push(("attn_mask", NodeArg::One(m)));
        }
        self.push1(Op::ScaledDotProductAttention, args)
    }

    /// `round(x / scale)` saturated to int8.
    pub fn quantize(&mut self, x: Var, scale: f32) -> Result<Var> {
        let s = self.scalar(self.dtype(x), scale);
        let d = self.string("int8");
        self.push1(
            Op::Quantize,
            vec![
                ("input", NodeArg::One(x)),
                ("scale", NodeArg::One(s)),
                ("output_dtype", NodeArg::One(d)),
            ],
        )
    }

    /// `q * scale` in `dtype`.
    pub fn dequantize(&mut self, q: Var, scale: f32, dtype: DType) -> Result<Var> {
        let s = self.scalar(dtype, scale);
        self.push1(
            Op::Dequantize,
            vec![("input", NodeArg::One(q)), ("scale", NodeArg::One(s))],
        )
    }

    /// Validates, drops ops that do not reach an output, and returns the program and its weights.
    pub fn finish(self) -> Result<Bundle> {
        if self.outputs.is_empty() {
            return Err(MilError::Program(
                "the kernel returns nothing: call output()".into(),
            ));
        }
        let live = self.live_values();
        let name = |v: &Var| self.values[v.0].name.clone();
        let mut ops = Vec::new();
        for node in &self.nodes {
            if !node.outputs.iter().any(|v| live.contains(v)) {
                continue;
            }
            let args = node
                .args
                .iter()
                .map(|(n, a)| {
                    (
                        n.to_string(),
                        match a {
                            NodeArg::One(v) => Argument::Value(name(v)),
                            NodeArg::Tuple(vs) => Argument::Tuple(vs.iter().map(name).collect()),
                        },
                    )
                })
                .collect();
            let label = if node.outputs.len() == 1 {
                name(&node.outputs[0])
            } else {
                format!("{}_split", name(&node.outputs[0]))
            };
            ops.push(Operation {
                op: node.op,
                args,
                attrs: node.attrs.clone(),
                label,
                outputs: node
                    .outputs
                    .iter()
                    .map(|v| Output {
                        name: name(v),
                        ty: self.values[v.0].ty.clone(),
                    })
                    .collect(),
            });
        }
        let function = Function {
            name: "main".to_string(),
            target: "ios18".to_string(),
            inputs: self
                .inputs
                .iter()
                .map(|(v, ty)| (name(v), ty.clone()))
                .collect(),
            ops,
            outputs: self.outputs.iter().map(name).collect(),
        };
        let program = Program::new(function);
        crate::validate::validate(&program)?;
        let mut weights = WeightFiles::new();
        for (path, writer) in self.blobs {
            weights.insert(path, writer.finish());
        }
        Ok(Bundle { program, weights })
    }

    /// Values that reach an output, walking producers backwards.
    fn live_values(&self) -> HashSet<Var> {
        let mut live: HashSet<Var> = self.outputs.iter().copied().collect();
        for node in self.nodes.iter().rev() {
            if node.outputs.iter().any(|v| live.contains(v)) {
                live.extend(node.outputs.iter().copied());
                for (_, a) in &node.args {
                    match a {
                        NodeArg::One(v) => {
                            live.insert(*v);
                        }
                        NodeArg::Tuple(vs) => live.extend(vs.iter().copied()),
                    }
                }
            }
        }
        live
    }
}
