//! The dataflow view of a function the checks share, and the graph rules: dead return values,
//! dead subgraphs, and programs with no conv/matmul/linear anchor.

use super::Finding;
use crate::infer::{OpKind, Resolved};
use crate::ops::Op;
use crate::program::{Function, Operation};
use crate::types::{TensorType, Type};
use crate::validate::resolve_each;
use std::collections::HashMap;

/// Name lookups over one function and the resolved form of each op, built once so each check
/// is linear in the program size. Tolerates invalid IR: a duplicated name resolves to its first
/// definition, a missing one to `None`, and an op that does not resolve has no [`OpKind`].
pub(super) struct Values<'f> {
    function: &'f Function,
    producers: HashMap<&'f str, usize>,
    tensors: HashMap<&'f str, &'f TensorType>,
    resolved: Vec<Option<Resolved>>,
}

impl<'f> Values<'f> {
    pub(super) fn new(function: &'f Function) -> Values<'f> {
        let mut producers = HashMap::new();
        let mut tensors = HashMap::new();
        for (name, ty) in &function.inputs {
            tensors.entry(name.as_str()).or_insert(ty);
        }
        for (index, op) in function.ops.iter().enumerate() {
            for out in &op.outputs {
                producers.entry(out.name.as_str()).or_insert(index);
                if let Type::Tensor(ty) = &out.ty {
                    tensors.entry(out.name.as_str()).or_insert(ty);
                }
            }
        }
        Values {
            function,
            producers,
            tensors,
            resolved: resolve_each(function),
        }
    }

    /// What op `index` of the function computes, when it resolves.
    pub(super) fn kind(&self, index: usize) -> Option<&OpKind> {
        self.resolved.get(index)?.as_ref().map(|r| &r.kind)
    }

    /// What the op producing `name` computes, when it resolves.
    pub(super) fn producer_kind(&self, name: &str) -> Option<&OpKind> {
        self.kind(*self.producers.get(name)?)
    }

    /// The tensor type of value `name` (None for scalars and unknown names).
    pub(super) fn tensor(&self, name: &str) -> Option<&'f TensorType> {
        self.tensors.get(name).copied()
    }

    /// The tensor type of op argument `arg`, when it names one tensor value.
    pub(super) fn arg_tensor(&self, op: &Operation, arg: &str) -> Option<&'f TensorType> {
        self.tensor(op.arg_value(arg)?)
    }

    /// The op that produces `name`.
    pub(super) fn producer(&self, name: &str) -> Option<&'f Operation> {
        self.producers
            .get(name)
            .and_then(|&i| self.function.ops.get(i))
    }

    /// Whether `name` is a function input or an op output.
    fn is_defined(&self, name: &str) -> bool {
        self.producers.contains_key(name) || self.function.inputs.iter().any(|(n, _)| n == name)
    }
}

/// Dead names in the return list, and non-constant ops none of whose results reach a returned
/// value. Unused constants are not reported: they carry no computation and no source reports
/// one failing a compile.
pub(super) fn check_liveness(function: &Function, values: &Values, findings: &mut Vec<Finding>) {
    for name in &function.outputs {
        if !values.is_defined(name) {
            findings.push(Finding::function(
                "dead-return-value",
                format!(
                    "`{}` returns `{name}`, which no op produces and is not an input",
                    function.name
                ),
            ));
        }
    }

    // Walk back from the outputs through producers; a worklist (not one reverse pass) so that
    // ops listed out of order still resolve.
    let mut live = vec![false; function.ops.len()];
    let mut pending: Vec<&str> = function.outputs.iter().map(String::as_str).collect();
    while let Some(name) = pending.pop() {
        let Some(&index) = values.producers.get(name) else {
            continue;
        };
        if std::mem::replace(&mut live[index], true) {
            continue;
        }
        for (_, arg) in &function.ops[index].args {
            pending.extend(arg.names());
        }
    }
    for (op, _) in function
        .ops
        .iter()
        .zip(&live)
        .filter(|(op, &is_live)| !is_live && !op.op.is_constant())
    {
        findings.push(Finding::at(
            "dead-op",
            op,
            "no returned value depends on this op's results".to_string(),
        ));
    }
}

/// A function must contain a conv, linear or matmul for the ANE to take it.
pub(super) fn check_anchor(function: &Function, findings: &mut Vec<Finding>) {
    let anchored = function
        .ops
        .iter()
        .any(|op| matches!(op.op, Op::Conv | Op::Linear | Op::Matmul));
    if !anchored {
        findings.push(Finding::function(
            "no-anchor",
            format!(
                "function `{}` has no conv, linear or matmul op",
                function.name
            ),
        ));
    }
}
