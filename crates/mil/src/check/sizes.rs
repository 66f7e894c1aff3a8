//! Size limits: per-axis extents, total constant bytes per program, and per-op working sets
//! against the on-chip SRAM.
//!
//! Sizes are computed saturating, so absurd shapes in parsed text exceed every limit instead of
//! overflowing.

use super::graph::Values;
use super::Finding;
use crate::program::{Function, Operation, Program};
use crate::types::{Literal, TensorType};

/// Largest extent of the last two axes on M1–M3 (§5 #26).
const EXTENT_M1_M3: usize = 16_384;
/// Largest extent of any axis on every chip (§5 #26).
const EXTENT_MAX: usize = 65_536;
/// Constants known to compile in one program (§5 #29).
const WEIGHTS_KNOWN_GOOD: u64 = 1_500_000_000;
/// The reported per-program ceiling for constants (§5 #29).
const WEIGHTS_CEILING: u64 = 2_000_000_000;
/// On-chip SRAM; a bigger per-op working set spills (§5 #30).
const SRAM_BYTES: u64 = 32 << 20;

/// Bytes of a packed tensor, saturating at `u64::MAX`.
pub(super) fn byte_size(ty: &TensorType) -> u64 {
    ty.shape
        .iter()
        .fold(ty.dtype.size_bytes() as u64, |acc, &d| {
            acc.saturating_mul(d as u64)
        })
}

/// Every tensor value (inputs, constants, op results) against the per-axis limits.
pub(super) fn check_extents(function: &Function, findings: &mut Vec<Finding>) {
    for (name, ty) in &function.inputs {
        if let Some((rule, message)) = extent_problem(name, ty) {
            findings.push(Finding::function(rule, message));
        }
    }
    for op in &function.ops {
        for out in &op.outputs {
            let Some(ty) = out.ty.as_tensor() else {
                continue;
            };
            if let Some((rule, message)) = extent_problem(&out.name, ty) {
                findings.push(Finding::at(rule, op, message));
            }
        }
    }
}

/// The rule and message for the largest limit `ty` breaks, if any. The last two axes are the
/// spatial (and matmul) axes with the lower M1–M3 limit; the others are channels and batches.
fn extent_problem(name: &str, ty: &TensorType) -> Option<(&'static str, String)> {
    let spatial_from = ty.rank().saturating_sub(2);
    let (axis, extent) = ty
        .shape
        .iter()
        .copied()
        .enumerate()
        .max_by_key(|&(_, d)| d)?;
    if extent > EXTENT_MAX {
        return Some((
            "axis-extent-65536",
            format!("`{name}` is {ty}: axis {axis} has extent {extent} > 65536"),
        ));
    }
    let (axis, extent) = ty
        .shape
        .iter()
        .copied()
        .enumerate()
        .skip(spatial_from)
        .find(|&(_, d)| d > EXTENT_M1_M3)?;
    Some((
        "axis-extent-16384",
        format!("`{name}` is {ty}: spatial axis {axis} has extent {extent} > 16384"),
    ))
}

/// All tensor constants of the program (inline and BLOBFILE) against the weight ceiling.
pub(super) fn check_weight_bytes(program: &Program, findings: &mut Vec<Finding>) {
    let total = program
        .functions
        .iter()
        .flat_map(|f| &f.ops)
        .flat_map(|op| &op.attrs)
        .filter_map(|(_, literal)| match literal {
            Literal::Tensor { ty, .. } | Literal::Blob { ty, .. } => Some(byte_size(ty)),
            Literal::Scalar(_) => None,
        })
        .fold(0u64, u64::saturating_add);
    let rule = if total > WEIGHTS_CEILING {
        "weights-over-2gb"
    } else if total > WEIGHTS_KNOWN_GOOD {
        "weights-over-1.5gb"
    } else {
        return;
    };
    findings.push(Finding::function(
        rule,
        format!("the program's constants total {total} bytes"),
    ));
}

/// Each computing op's tensor operands plus results against the SRAM size.
pub(super) fn check_working_sets(
    function: &Function,
    values: &Values,
    findings: &mut Vec<Finding>,
) {
    for op in function.ops.iter().filter(|op| !op.op.is_constant()) {
        let bytes = working_set(op, values);
        if bytes > SRAM_BYTES {
            findings.push(Finding::at(
                "sram-working-set",
                op,
                format!(
                    "operands and results take {} MiB, more than the 32 MiB SRAM",
                    bytes >> 20
                ),
            ));
        }
    }
}

fn working_set(op: &Operation, values: &Values) -> u64 {
    let operands = op
        .args
        .iter()
        .flat_map(|(_, arg)| arg.names())
        .filter_map(|name| values.tensor(name))
        .map(byte_size);
    let results = op
        .outputs
        .iter()
        .filter_map(|out| out.ty.as_tensor())
        .map(byte_size);
    operands.chain(results).fold(0, u64::saturating_add)
}
