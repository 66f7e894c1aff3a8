//! Compilation of a MIL program into a [`Plan`]: `mil` validates the program and resolves
//! every op of `main`, value names become slot indices, constants are evaluated once, and
//! each value's last use is recorded so the run loop frees it as soon as it is dead. Running
//! a plan needs no name lookups or hashing.

use super::input::{segment_inputs, SegmentPlan};
use super::pool::Pool;
use super::quant::{dequantize, AffineParams};
use super::step::{is_view, Step};
use super::tensor::Tensor;
use super::Precision;
use crate::error::{DeviceError, Result};
use crate::TensorSpec;
use anetrain_mil::infer::AffinePlan;
use anetrain_mil::{
    ArgKind, Argument, DType, Literal, MilError, OpKind, Operation, Program, Resolved, TensorType,
    Type, WeightFiles,
};
use std::collections::HashMap;

/// A compiled function, ready to run.
#[derive(Debug)]
pub(crate) struct Plan {
    pub slot_count: usize,
    /// Function inputs with their slots.
    pub inputs: Vec<(TensorSpec, usize)>,
    /// Per input, its column segments when the program reads it only through column slices.
    pub segments: Vec<Option<Vec<SegmentPlan>>>,
    /// Returned values with their slots.
    pub outputs: Vec<(TensorSpec, usize)>,
    /// Constants read by some op or returned, placed in their slots at the start of a run.
    pub consts: Vec<(usize, Tensor)>,
    pub steps: Vec<Step>,
}

/// Validates `program` (as every device does) and compiles its `main` function.
pub(crate) fn compile(
    program: &Program,
    weights: &WeightFiles,
    precision: Precision,
) -> Result<Plan> {
    let (f, resolved) = anetrain_mil::resolve_main(program)?;
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
        let slot = c.define(name, Type::Tensor(ty.clone()));
        inputs.push((
            TensorSpec {
                name: name.clone(),
                ty: ty.clone(),
            },
            slot,
        ));
    }
    for (op, r) in f.ops.iter().zip(resolved) {
        c.compile_op(op, r)?;
    }
    let mut outputs = Vec::new();
    for name in &f.outputs {
        let slot = c.slots[name.as_str()];
        let ty = TensorType::new(c.types[slot].dtype(), c.types[slot].shape());
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

struct Compiler<'a> {
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

impl<'a> Compiler<'a> {
    /// A slot for `name` (validation has checked that names are unique).
    fn define(&mut self, name: &'a str, ty: Type) -> usize {
        let slot = self.types.len();
        self.slots.insert(name, slot);
        self.types.push(ty);
        slot
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

    fn compile_op(&mut self, op: &'a Operation, resolved: Resolved) -> Result<()> {
        match resolved.kind {
            OpKind::Const => {
                let (out, lit) = (&op.outputs[0], op.attr("val"));
                let slot = self.define(&out.name, out.ty.clone());
                if let Some(lit) = lit {
                    self.literals.insert(&out.name, lit);
                    if let Some(t) = self.literal_tensor(lit)? {
                        self.consts.push((slot, t));
                    }
                }
                Ok(())
            }
            OpKind::ConstAffineDequantize(plan) => {
                let out = &op.outputs[0];
                let mut t = self.affine_dequantize_const(op, &plan)?;
                if self.precision == Precision::F16 && out.ty.dtype() == DType::Fp16 {
                    let mut data = vec![0.0; t.numel()];
                    t.copy_to(&mut data);
                    super::elementwise::round_to_f16(&mut data);
                    t = Tensor::new(t.shape().to_vec(), data);
                }
                let slot = self.define(&out.name, out.ty.clone());
                self.consts.push((slot, t));
                Ok(())
            }
            kind => self.compile_compute(op, kind, resolved.outputs),
        }
    }

    /// The values of the const a parameter argument names, if the argument is present.
    fn floats(&self, op: &Operation, name: &str) -> Result<Option<Vec<f32>>> {
        let lit = match op.arg(name) {
            Some(Argument::Value(v)) => self.literals.get(v.as_str()).copied(),
            _ => None,
        };
        lit.map(|l| self.floats_of(op, name, l)).transpose()
    }

    fn floats_of(&self, op: &Operation, name: &str, lit: &Literal) -> Result<Vec<f32>> {
        let t = self
            .literal_tensor(lit)?
            .ok_or_else(|| unsupported(op, format!("`{name}` must be numeric")))?;
        let mut v = vec![0.0; t.numel()];
        t.copy_to(&mut v);
        Ok(v)
    }

    /// Folds `constexpr_affine_dequantize` (all inputs are bracket attributes).
    fn affine_dequantize_const(&self, op: &Operation, plan: &AffinePlan) -> Result<Tensor> {
        let attr = |n: &str| {
            op.attr(n)
                .ok_or_else(|| unsupported(op, format!("missing attribute `{n}`")))
        };
        let data = self
            .literal_tensor(attr("quantized_data")?)?
            .ok_or_else(|| unsupported(op, "`quantized_data` must be a tensor"))?;
        let scale = self.floats_of(op, "scale", attr("scale")?)?;
        let zero_point = self.floats_of(op, "zero_point", attr("zero_point")?)?;
        let p = AffineParams::new(plan, &scale, Some(&zero_point));
        Ok(dequantize(&data, &p, &mut Pool::default()))
    }

    fn compile_compute(&mut self, op: &'a Operation, kind: OpKind, types: Vec<Type>) -> Result<()> {
        if let OpKind::Conv(p) = &kind {
            if p.input.len() != 2 {
                return Err(unsupported(
                    op,
                    format!("only 2-D conv runs on this device, got {} spatial axes; reshape 1-D inputs to [N, C, 1, L]", p.input.len()),
                ));
            }
        }
        let affine = match &kind {
            OpKind::Quantize { affine, .. } | OpKind::Dequantize(affine) => {
                let scale = self.floats(op, "scale")?.unwrap_or_default();
                let zero_point = self.floats(op, "zero_point")?;
                Some(AffineParams::new(affine, &scale, zero_point.as_deref()))
            }
            _ => None,
        };
        let mut args = Vec::new();
        for spec in op.op.args().iter().filter(|s| s.kind != ArgKind::Param) {
            match op.arg(spec.name) {
                None => args.push(None),
                Some(a) => args.extend(a.names().into_iter().map(|n| Some(self.slots[n]))),
            }
        }
        let outputs = op
            .outputs
            .iter()
            .map(|o| self.define(&o.name, o.ty.clone()))
            .collect();
        let round_f16 = self.precision == Precision::F16
            && !is_view(&kind)
            && op.outputs.iter().any(|o| o.ty.dtype() == DType::Fp16);
        self.steps.push(Step {
            kind,
            affine,
            label: op.label.clone(),
            args,
            outputs,
            output_shapes: types.iter().map(|t| t.shape().to_vec()).collect(),
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
        let mut returned = vec![false; slot_count];
        for (_, s) in &outputs {
            returned[*s] = true;
        }
        let segments = segment_inputs(&inputs, &mut self.steps, &returned);
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
            segments,
            outputs,
            consts,
            steps: self.steps,
        }
    }
}
