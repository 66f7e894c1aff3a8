//! Rules about individual ops: dtypes, ops the ANE refuses or mis-executes, conv limits,
//! ranks, width-offset slices, and data-dependent range and precision hazards.
//!
//! A rule about which op it is reads the op; a rule about what the op's parameters mean (conv
//! geometry, matmul transposes, slice offsets, reduced axes) reads its resolved [`OpKind`], so
//! no rule here decodes a parameter or derives a shape itself. Ops that do not resolve are left
//! to validation.

use super::graph::Values;
use super::Finding;
use crate::infer::{ConvPlan, OpKind, ReduceKind, SlicePlan};
use crate::ops::Op;
use crate::program::{Function, Operation};
use crate::types::DType;

/// reduce_sum over at least this many elements loses precision in its fp16 accumulator (§5 #23).
const LONG_REDUCTION: usize = 256;

pub(super) fn check_ops(function: &Function, values: &Values, findings: &mut Vec<Finding>) {
    for (index, op) in function.ops.iter().enumerate() {
        check_compute_dtype(op, findings);
        check_op_kind(op, findings);
        if matches!(op.op, Op::Reshape | Op::Transpose) {
            check_rank(op, findings);
        }
        if op.op == Op::Concat {
            check_slice_concat(op, values, findings);
        }
        match values.kind(index) {
            Some(OpKind::Conv(plan)) => check_conv(op, plan, findings),
            Some(&OpKind::Matmul {
                transpose_x,
                transpose_y,
            }) => check_matmul(op, [transpose_x, transpose_y], values, findings),
            Some(OpKind::Slice(plan)) if width_offset(plan) => findings.push(Finding::at(
                "width-offset-slice-range",
                op,
                "begins past 0 on the last axis".to_string(),
            )),
            Some(OpKind::Reduce {
                kind: ReduceKind::Sum,
                axes,
                ..
            }) => check_reduce_sum(op, axes, values, findings),
            _ => {}
        }
        if matches!(op.op, Op::Conv | Op::Matmul | Op::Linear) {
            check_int8_weights(op, values, findings);
        }
    }
}

/// Only constants and `cast` may produce fp32 or int32 tensors: anything else is fp32 or int32
/// arithmetic, which the ANE compiler rejects.
fn check_compute_dtype(op: &Operation, findings: &mut Vec<Finding>) {
    if op.op.is_constant() || op.op == Op::Cast {
        return;
    }
    for out in &op.outputs {
        let dtype = out.ty.dtype();
        if out.ty.as_tensor().is_some() && matches!(dtype, DType::Fp32 | DType::Int32) {
            findings.push(Finding::at(
                "fp16-compute",
                op,
                format!("computes `{}` as {}", out.name, out.ty),
            ));
        }
    }
}

/// Ops that are refused or mis-executed whatever their arguments.
fn check_op_kind(op: &Operation, findings: &mut Vec<Finding>) {
    let (rule, message) = match op.op {
        Op::Concat => ("concat", "uses concat"),
        Op::Gelu => ("gelu", "uses gelu"),
        Op::ReduceMean => ("reduce-mean-m5", "uses reduce_mean"),
        Op::Exp | Op::Log | Op::Sqrt => ("transcendentals", "is a transcendental function"),
        Op::ScaledDotProductAttention if op.arg("attn_mask").is_some() => (
            "sdpa-mask-ignored",
            "passes attn_mask, which the ANE ignores",
        ),
        _ => return,
    };
    findings.push(Finding::at(rule, op, message.to_string()));
}

/// The kernel width (last kernel axis) and input channels of a resolved conv.
fn check_conv(op: &Operation, plan: &ConvPlan, findings: &mut Vec<Finding>) {
    if let Some(&kw) = plan.kernel.last() {
        let rule = match kw {
            16.. => Some("conv-kernel-width-16"),
            14..=15 => Some("conv-kernel-width-14"),
            _ => None,
        };
        if let Some(rule) = rule {
            findings.push(Finding::at(rule, op, format!("kernel width is {kw}")));
        }
    }
    let channels = plan.in_channels;
    let rule = match channels {
        32_000.. => Some("conv-input-channels-32000"),
        8_193..=31_999 => Some("conv-input-channels-8192"),
        _ => None,
    };
    if let Some(rule) = rule {
        findings.push(Finding::at(
            rule,
            op,
            format!("has {channels} input channels"),
        ));
    }
}

/// A rank-5 matmul fails when an operand is transposed, by its resolved flag or by a
/// transpose op producing it.
fn check_matmul(op: &Operation, flags: [bool; 2], values: &Values, findings: &mut Vec<Finding>) {
    for (arg, by_flag) in ["x", "y"].into_iter().zip(flags) {
        let Some(ty) = values.arg_tensor(op, arg) else {
            continue;
        };
        let by_op = op
            .arg_value(arg)
            .and_then(|name| values.producer(name))
            .is_some_and(|p| p.op == Op::Transpose);
        if ty.rank() >= 5 && (by_op || by_flag) {
            findings.push(Finding::at(
                "matmul-rank-5-transpose",
                op,
                format!("operand `{arg}` is {ty} and transposed"),
            ));
        }
    }
}

fn check_rank(op: &Operation, findings: &mut Vec<Finding>) {
    for out in &op.outputs {
        let rank = out.ty.shape().len();
        if rank > 5 {
            findings.push(Finding::at(
                "rank-at-most-5",
                op,
                format!("produces `{}` of rank {rank}: {}", out.name, out.ty),
            ));
        }
    }
}

/// A slice reading from past 0 on the last axis (the crop-DMA path).
fn width_offset(plan: &SlicePlan) -> bool {
    plan.begin
        .len()
        .checked_sub(1)
        .is_some_and(|last| plan.lowest(last) > 0)
}

/// A concat of two or more width-offset slices gives wrong elements on M1–M3.
fn check_slice_concat(op: &Operation, values: &Values, findings: &mut Vec<Finding>) {
    let Some(parts) = op.arg("values") else {
        return;
    };
    let slices: Vec<&str> = parts
        .names()
        .into_iter()
        .filter(|name| {
            matches!(values.producer_kind(name), Some(OpKind::Slice(plan)) if width_offset(plan))
        })
        .collect();
    if slices.len() >= 2 {
        findings.push(Finding::at(
            "width-offset-slice-concat",
            op,
            format!(
                "concatenates {} slices that begin past 0 on the last axis: `{}`",
                slices.len(),
                slices.join("`, `")
            ),
        ));
    }
}

/// The number of elements summed into each result: the product of the extents of the
/// resolved reduction axes.
fn check_reduce_sum(op: &Operation, axes: &[usize], values: &Values, findings: &mut Vec<Finding>) {
    let Some(x) = values.arg_tensor(op, "x") else {
        return;
    };
    let k = axes
        .iter()
        .filter_map(|&a| x.shape.get(a))
        .fold(1usize, |acc, &d| acc.saturating_mul(d));
    if k >= LONG_REDUCTION {
        findings.push(Finding::at(
            "reduce-sum-precision",
            op,
            format!("sums {k} elements of {x} into each result"),
        ));
    }
}

/// Operands produced by `constexpr_affine_dequantize` are int8 weights.
fn check_int8_weights(op: &Operation, values: &Values, findings: &mut Vec<Finding>) {
    let quantized = op.args.iter().flat_map(|(_, a)| a.names()).find(|name| {
        values
            .producer(name)
            .is_some_and(|p| p.op == Op::ConstexprAffineDequantize)
    });
    if let Some(name) = quantized {
        findings.push(Finding::at(
            "int8-weight-activation-range",
            op,
            format!("multiplies by int8 weights `{name}`"),
        ));
    }
}
