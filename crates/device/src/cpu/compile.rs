//! Compilation of a MIL function into a [`Plan`]: value names become slot indices, constants
//! are evaluated once, every op's parameters and output shapes are resolved (and checked
//! against the declared types), and each value's last use is recorded so the run loop frees
//! it as soon as it is dead. Running a plan needs no name lookups or hashing.

use super::pool::Pool;
use super::quant::{affine_params, dequantize};
use super::step::Step;
use super::tensor::Tensor;
use super::Precision;
use crate::error::{DeviceError, Result};
use crate::TensorSpec;
use anetrain_mil::{
    ArgKind, Argument, DType, Literal, MilError, Op, Operation, Program, TensorType, Type,
    WeightFiles,
};
use std::collections::HashMap;

/// A compiled function, ready to run.
#[derive(Debug)]
pub(crate) struct Plan {
    pub slot_count: usize,
    /// Function inputs with their slots.
    pub inputs: Vec<(TensorSpec, usize)>,
    /// Returned values with their slots.
    pub outputs: Vec<(TensorSpec, usize)>,
    /// Constants read by some op or returned, placed in their slots at the start of a run.
    pub consts: Vec<(usize, Tensor)>,
    pub steps: Vec<Step>,
}

/// Compiles the `main` function of `program`.
pub(crate) fn compile(
    program: &Program,
    weights: &WeightFiles,
    precision: Precision,
) -> Result<Plan> {
    let f = program.main().ok_or_else(|| {
        MilError::Program("the program has no `main` function; devices run `main`".to_string())
    })?;
    let mut c = Compiler {
        weights,
        precision,
        slots: HashMap::new(),
        types: Vec::new(),
        literals: HashMap::new(),
        consts: Vec::new(),
        steps: Vec::new(),
    };
    let mut inputs = Vec::new();
    for (name, ty) in &f.inputs {
        let slot = c.define(name, Type::Tensor(ty.clone()))?;
        inputs.push((
            TensorSpec {
                name: name.clone(),
                ty: ty.clone(),
            },
            slot,
        ));
    }
    for op in &f.ops {
        c.compile_op(op)?;
    }
    let mut outputs = Vec::new();
    for name in &f.outputs {
        let slot = *c.slots.get(name.as_str()).ok_or_else(|| {
            MilError::Program(format!(
                "the function returns `{name}`, which no op or input defines"
            ))
        })?;
        let ty = match &c.types[slot] {
            Type::Tensor(t) => t.clone(),
            Type::Scalar(d) if d.is_tensor_element() => TensorType::new(*d, []),
            Type::Scalar(d) => {
                return Err(MilError::Program(format!(
                    "the function returns `{name}` of type {d}; return tensors"
                ))
                .into())
            }
        };
        outputs.push((
            TensorSpec {
                name: name.clone(),
                ty,
            },
            slot,
        ));
    }
    // Inputs and outputs are always materialised (intermediates may be views): a lower
    // bound, so a program too large for this machine fails here rather than in an abort.
    let bytes = inputs
        .iter()
        .chain(&outputs)
        .try_fold(0u64, |sum, (spec, _)| {
            (spec.numel() as u64).checked_mul(4)?.checked_add(sum)
        })
        .unwrap_or(u64::MAX);
    crate::host::ensure_memory(
        bytes,
        "the program (its inputs and outputs)",
        "make its tensors smaller",
    )
    .map_err(DeviceError::OutOfMemory)?;
    Ok(c.finish(inputs, outputs))
}

pub(super) struct Compiler<'a> {
    weights: &'a WeightFiles,
    precision: Precision,
    slots: HashMap<&'a str, usize>,
    types: Vec<Type>,
    literals: HashMap<&'a str, &'a Literal>,
    consts: Vec<(usize, Tensor)>,
    steps: Vec<Step>,
}

fn unsupported(op: &Operation, message: impl Into<String>) -> DeviceError {
    DeviceError::Unsupported {
        op: op.op.name().to_string(),
        label: op.label.clone(),
        message: message.into(),
    }
}

pub(super) fn type_error(op: &Operation, message: impl Into<String>) -> DeviceError {
    MilError::Type {
        op: op.op.name().to_string(),
        label: op.label.clone(),
        message: message.into(),
    }
    .into()
}

impl<'a> Compiler<'a> {
    fn define(&mut self, name: &'a str, ty: Type) -> Result<usize> {
        if self.slots.contains_key(name) {
            return Err(MilError::Program(format!(
                "`{name}` is defined twice; value names must be unique"
            ))
            .into());
        }
        let slot = self.types.len();
        self.slots.insert(name, slot);
        self.types.push(ty);
        Ok(slot)
    }

    /// The values of a constant literal (scalars have shape `[]`), or `None` for a string.
    fn literal_tensor(&self, lit: &Literal) -> Result<Option<Tensor>> {
        Ok(match lit {
            Literal::Scalar(s) => s.as_f64().map(|v| Tensor::new(vec![], vec![v as f32])),
            Literal::Tensor { ty, data } => {
                if data.len() != ty.numel() {
                    return Err(MilError::Program(format!(
                        "a {ty} literal has {} values",
                        data.len()
                    ))
                    .into());
                }
                Some(Tensor::new(ty.shape.clone(), data.to_f32()))
            }
            Literal::Blob { ty, path, offset } => Some(Tensor::new(
                ty.shape.clone(),
                self.weights.read_tensor(path, *offset, ty)?,
            )),
        })
    }

    fn compile_op(&mut self, op: &'a Operation) -> Result<()> {
        match op.op {
            Op::Const => {
                let lit = op
                    .attr("val")
                    .ok_or_else(|| type_error(op, "const needs a `val` attribute"))?;
                let out = self.single_output(op)?;
                let slot = self.define(&out.name, out.ty.clone())?;
                self.literals.insert(&out.name, lit);
                if let Some(t) = self.literal_tensor(lit)? {
                    self.check_shape(op, &out.ty, t.shape())?;
                    self.consts.push((slot, t));
                }
                Ok(())
            }
            Op::ConstexprAffineDequantize => {
                let out = self.single_output(op)?;
                let t = self.affine_dequantize_const(op)?;
                self.check_shape(op, &out.ty, t.shape())?;
                let slot = self.define(&out.name, out.ty.clone())?;
                let mut t = t;
                if self.precision == Precision::F16 && out.ty.dtype() == DType::Fp16 {
                    let mut data = vec![0.0; t.numel()];
                    t.copy_to(&mut data);
                    super::elementwise::round_to_f16(&mut data);
                    t = Tensor::new(t.shape().to_vec(), data);
                }
                self.consts.push((slot, t));
                Ok(())
            }
            _ => self.compile_compute(op),
        }
    }

    fn single_output(&self, op: &'a Operation) -> Result<&'a anetrain_mil::Output> {
        match op.outputs.as_slice() {
            [o] => Ok(o),
            _ => Err(type_error(
                op,
                format!("expected one output, found {}", op.outputs.len()),
            )),
        }
    }

    fn check_shape(&self, op: &Operation, declared: &Type, inferred: &[usize]) -> Result<()> {
        if declared.shape() != inferred {
            return Err(type_error(
                op,
                format!("declares {declared} but its arguments give shape {inferred:?}"),
            ));
        }
        Ok(())
    }

    /// The literal a parameter argument names, if the argument is present.
    pub(super) fn param(&self, op: &Operation, name: &str) -> Result<Option<&'a Literal>> {
        match op.arg(name) {
            None => Ok(None),
            Some(Argument::Value(v)) => self.literals.get(v.as_str()).copied().map(Some).ok_or_else(|| {
                unsupported(op, format!("`{name}` = `{v}` must name a const value (this device resolves parameters at compile time)"))
            }),
            Some(Argument::Tuple(_)) => Err(type_error(op, format!("`{name}` must be a single value, not a tuple"))),
        }
    }

    pub(super) fn ints(&self, op: &Operation, name: &str) -> Result<Option<Vec<i64>>> {
        self.param(op, name)?
            .map(|l| {
                l.as_i64_vec()
                    .ok_or_else(|| type_error(op, format!("`{name}` must be integers")))
            })
            .transpose()
    }

    pub(super) fn req_ints(&self, op: &Operation, name: &str) -> Result<Vec<i64>> {
        self.ints(op, name)?
            .ok_or_else(|| type_error(op, format!("missing argument `{name}`")))
    }

    pub(super) fn int(&self, op: &Operation, name: &str) -> Result<Option<i64>> {
        match self.ints(op, name)? {
            None => Ok(None),
            Some(v) if v.len() == 1 => Ok(Some(v[0])),
            Some(v) => Err(type_error(
                op,
                format!("`{name}` must be one integer, got {v:?}"),
            )),
        }
    }

    pub(super) fn flag(&self, op: &Operation, name: &str) -> Result<bool> {
        match self.param(op, name)? {
            None => Ok(false),
            Some(l) => l
                .as_bool()
                .ok_or_else(|| type_error(op, format!("`{name}` must be a bool"))),
        }
    }

    pub(super) fn string(&self, op: &Operation, name: &str) -> Result<Option<String>> {
        self.param(op, name)?
            .map(|l| {
                l.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| type_error(op, format!("`{name}` must be a string")))
            })
            .transpose()
    }

    pub(super) fn floats_of(&self, op: &Operation, name: &str, lit: &Literal) -> Result<Vec<f32>> {
        let t = self
            .literal_tensor(lit)?
            .ok_or_else(|| type_error(op, format!("`{name}` must be numeric")))?;
        let mut v = vec![0.0; t.numel()];
        t.copy_to(&mut v);
        Ok(v)
    }

    pub(super) fn floats(&self, op: &Operation, name: &str) -> Result<Option<Vec<f32>>> {
        self.param(op, name)?
            .map(|l| self.floats_of(op, name, l))
            .transpose()
    }

    pub(super) fn scalar(&self, op: &Operation, name: &str) -> Result<Option<f32>> {
        match self.floats(op, name)? {
            None => Ok(None),
            Some(v) if v.len() == 1 => Ok(Some(v[0])),
            Some(_) => Err(type_error(op, format!("`{name}` must be a scalar"))),
        }
    }

    /// Folds `constexpr_affine_dequantize` (all inputs are bracket attributes).
    fn affine_dequantize_const(&self, op: &Operation) -> Result<Tensor> {
        let attr = |n: &str| {
            op.attr(n)
                .ok_or_else(|| type_error(op, format!("missing attribute `{n}`")))
        };
        let data = self
            .literal_tensor(attr("quantized_data")?)?
            .ok_or_else(|| type_error(op, "`quantized_data` must be a tensor"))?;
        let scale = self.floats_of(op, "scale", attr("scale")?)?;
        let zero_point = self.floats_of(op, "zero_point", attr("zero_point")?)?;
        let axis = attr("axis")?.as_i64_vec().and_then(|v| v.first().copied());
        let p = affine_params(data.shape(), scale, Some(zero_point), axis)
            .map_err(|m| type_error(op, m))?;
        Ok(dequantize(&data, &p, &mut Pool::default()))
    }

    fn compile_compute(&mut self, op: &'a Operation) -> Result<()> {
        let mut args = Vec::new();
        let mut shapes: Vec<Option<Vec<usize>>> = Vec::new();
        let mut dtypes = Vec::new();
        for spec in op.op.args().iter().filter(|s| s.kind != ArgKind::Param) {
            let names: Vec<&str> = match op.arg(spec.name) {
                None if spec.optional => {
                    args.push(None);
                    shapes.push(None);
                    dtypes.push(None);
                    continue;
                }
                None => return Err(type_error(op, format!("missing argument `{}`", spec.name))),
                Some(a) => a.names(),
            };
            for name in names {
                let slot = *self.slots.get(name).ok_or_else(|| {
                    MilError::Program(format!(
                        "op `{}` uses `{name}`, which is not defined before it",
                        op.label
                    ))
                })?;
                let ty = &self.types[slot];
                if ty.dtype() == DType::String {
                    return Err(type_error(
                        op,
                        format!(
                            "`{}` = `{name}` is a string; it must be a tensor",
                            spec.name
                        ),
                    ));
                }
                args.push(Some(slot));
                shapes.push(Some(ty.shape().to_vec()));
                dtypes.push(Some(ty.dtype()));
            }
        }
        let shape = |i: usize| -> Result<&[usize]> {
            shapes
                .get(i)
                .and_then(|s| s.as_deref())
                .ok_or_else(|| type_error(op, "missing tensor argument"))
        };
        let (kind, out_shapes) = self.resolve(op, &shape, &dtypes)?;
        if op.outputs.len() != out_shapes.len() {
            return Err(type_error(
                op,
                format!(
                    "declares {} outputs but computes {}",
                    op.outputs.len(),
                    out_shapes.len()
                ),
            ));
        }
        let mut outputs = Vec::new();
        for (o, s) in op.outputs.iter().zip(&out_shapes) {
            self.check_shape(op, &o.ty, s)?;
            outputs.push(self.define(&o.name, o.ty.clone())?);
        }
        let round_f16 = self.precision == Precision::F16
            && !kind.is_view()
            && op.outputs.iter().any(|o| o.ty.dtype() == DType::Fp16);
        self.steps.push(Step {
            kind,
            label: op.label.clone(),
            args,
            outputs,
            output_shapes: out_shapes,
            round_f16,
            free_after: Vec::new(),
        });
        Ok(())
    }

    /// Records last uses, keeps only the constants something reads, and builds the plan.
    fn finish(
        mut self,
        inputs: Vec<(TensorSpec, usize)>,
        outputs: Vec<(TensorSpec, usize)>,
    ) -> Plan {
        let slot_count = self.types.len();
        let mut last_use: Vec<Option<usize>> = vec![None; slot_count];
        let mut produced_by: Vec<Option<usize>> = vec![None; slot_count];
        for (i, step) in self.steps.iter().enumerate() {
            for &s in step.args.iter().flatten() {
                last_use[s] = Some(i);
            }
            for &s in &step.outputs {
                produced_by[s] = Some(i);
            }
        }
        let mut returned = vec![false; slot_count];
        for (_, s) in &outputs {
            returned[*s] = true;
        }
        for slot in 0..slot_count {
            if returned[slot] {
                continue;
            }
            if let Some(i) = last_use[slot].or(produced_by[slot]) {
                self.steps[i].free_after.push(slot);
            }
        }
        let consts = self
            .consts
            .into_iter()
            .filter(|(s, _)| returned[*s] || last_use[*s].is_some())
            .collect();
        Plan {
            slot_count,
            inputs,
            outputs,
            consts,
            steps: self.steps,
        }
    }
}
