//! Rules about individual ops: dtypes, ops the ANE refuses or mis-executes, conv limits,
//! ranks, width-offset slices, and data-dependent range and precision hazards.

use super::graph::Values;
use super::Finding;
use crate::infer::reduction_axes;
use crate::ops::Op;
use crate::program::{Function, Operation};
use crate::types::DType;

/// reduce_sum over at least this many elements loses precision in its fp16 accumulator (§5 #23).
const LONG_REDUCTION: usize = 256;

pub(super) fn check_ops(function: &Function, values: &Values, findings: &mut Vec<Finding>) {
    for op in &function.ops {
        check_compute_dtype(op, findings);
        check_op_kind(op, findings);
        match op.op {
            Op::Conv => check_conv(op, values, findings),
            Op::Matmul => check_matmul(op, values, findings),
            Op::Reshape | Op::Transpose => check_rank(op, findings),
            Op::Concat => check_slice_concat(op, values, findings),
            Op::SliceBySize if width_offset_slice(op, values) => findings.push(Finding::at(
                "width-offset-slice-range",
                op,
                "begins past 0 on the last axis".to_string(),
            )),
            Op::ReduceSum => check_reduce_sum(op, values, findings),
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

/// Kernel width from `weight` `[Cout, Cin/groups, kH, kW]`, input channels from `x` `[1, C, H, W]`.
fn check_conv(op: &Operation, values: &Values, findings: &mut Vec<Finding>) {
    if let Some(&[_, _, _, kw]) = values.arg_tensor(op, "weight").map(|t| t.shape.as_slice()) {
        let rule = match kw {
            16.. => Some("conv-kernel-width-16"),
            14..=15 => Some("conv-kernel-width-14"),
            _ => None,
        };
        if let Some(rule) = rule {
            findings.push(Finding::at(rule, op, format!("kernel width is {kw}")));
        }
    }
    if let Some(&channels) = values.arg_tensor(op, "x").and_then(|t| t.shape.get(1)) {
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
}

/// A rank-5 matmul fails when an operand is transposed, by flag or by a transpose op.
fn check_matmul(op: &Operation, values: &Values, findings: &mut Vec<Finding>) {
    for (arg, flag) in [("x", "transpose_x"), ("y", "transpose_y")] {
        let Some(ty) = values.arg_tensor(op, arg) else {
            continue;
        };
        let by_op = op
            .arg_value(arg)
            .and_then(|name| values.producer(name))
            .is_some_and(|p| p.op == Op::Transpose);
        let by_flag = values.flag(op, flag).unwrap_or(false);
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

/// `slice_by_size` whose constant `begin` is past 0 on the last axis (the crop-DMA path).
fn width_offset_slice(op: &Operation, values: &Values) -> bool {
    op.op == Op::SliceBySize
        && values
            .ints(op, "begin")
            .and_then(|begin| begin.last().copied())
            .is_some_and(|b| b > 0)
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
            values
                .producer(name)
                .is_some_and(|p| width_offset_slice(p, values))
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

/// The number of elements summed into each result: the product of the extents of the axes
/// [`reduction_axes`] resolves.
fn check_reduce_sum(op: &Operation, values: &Values, findings: &mut Vec<Finding>) {
    let Some(x) = values.arg_tensor(op, "x") else {
        return;
    };
    let axes = match op.arg("axes") {
        Some(_) => match values.ints(op, "axes") {
            Some(axes) => Some(axes),
            None => return,
        },
        None => None,
    };
    // Out-of-range axes are validation's to report; this rule has nothing to add.
    let Ok(reduced) = reduction_axes(axes.as_deref(), x.rank()) else {
        return;
    };
    let k = reduced
        .iter()
        .fold(1usize, |acc, &a| acc.saturating_mul(x.shape[a]));
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
