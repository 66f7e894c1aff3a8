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
use crate::infer::{resolve_op, ArgInfo, Bound};
use crate::ops::Op;
use crate::program::{Argument, Function, Operation, Output, Program};
use crate::types::{DType, Literal, Scalar, TensorData, TensorType, Type};
use half::f16;
use std::collections::{BTreeMap, HashMap, HashSet};

mod ops;

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

/// The tensor type of `shape`, checked to hold exactly `values.len()` elements.
fn sized_type(
    what: &str,
    dtype: DType,
    shape: impl Into<Vec<usize>>,
    values: &[f32],
) -> Result<TensorType> {
    let ty = TensorType::new(dtype, shape);
    if ty.numel() != values.len() {
        return Err(MilError::Program(format!(
            "{what} of shape {:?} needs {} values, got {}",
            ty.shape,
            ty.numel(),
            values.len()
        )));
    }
    Ok(ty)
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
        let ty = sized_type("constant", dtype, shape, values)?;
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
        let ty = sized_type(&format!("weight `{file}`"), dtype, shape, values)?;
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
        let types = resolve_op(op, &bound, &attrs)
            .map_err(|m| type_err(op, m))?
            .outputs;
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
