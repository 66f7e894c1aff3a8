//! Rules on a function's inputs and outputs, which become IOSurfaces (ane-reference §2.3–§2.5):
//! rank, last-axis width, minimum size, and equal sizes across several inputs or outputs.

use super::graph::Values;
use super::sizes::byte_size;
use super::Finding;
use crate::program::Function;
use crate::types::TensorType;

/// The smallest input or output OR saw evaluate on M4 Max (§2.4, OR #4).
const MIN_IO_BYTES: u64 = 49_152;
/// Surface rows are laid out in multiples of this many elements on M5 (§2.4, AB).
const WIDTH_QUANTUM: usize = 32;

/// One function input or output with its tensor type.
struct Port<'f> {
    /// `input` or `output`.
    role: &'static str,
    name: &'f str,
    ty: &'f TensorType,
}

pub(super) fn check_io(function: &Function, values: &Values, findings: &mut Vec<Finding>) {
    let inputs: Vec<Port> = function
        .inputs
        .iter()
        .map(|(name, ty)| Port {
            role: "input",
            name,
            ty,
        })
        .collect();
    // A returned name with no tensor type is reported by the liveness check, not here.
    let outputs: Vec<Port> = function
        .outputs
        .iter()
        .filter_map(|name| {
            values.tensor(name).map(|ty| Port {
                role: "output",
                name,
                ty,
            })
        })
        .collect();

    for port in inputs.iter().chain(&outputs) {
        check_port(port, findings);
    }
    check_equal_sizes(&inputs, "equal-input-sizes", findings);
    check_equal_sizes(&outputs, "equal-output-sizes", findings);
}

fn check_port(port: &Port, findings: &mut Vec<Finding>) {
    let Port { role, name, ty } = port;
    let known_layout = matches!(ty.shape.as_slice(), [1, _, _] | [1, _, _, _]);
    if !known_layout {
        findings.push(Finding::function(
            "io-rank",
            format!("{role} `{name}` is {ty}, not [1, C, H, W] or [1, C, S]"),
        ));
    }
    if let Some(&width) = ty.shape.last() {
        if width < WIDTH_QUANTUM {
            findings.push(Finding::function(
                "io-width-multiple-of-32",
                format!("{role} `{name}` is {ty}: last-axis width {width} is narrower than 32"),
            ));
        } else if width % WIDTH_QUANTUM != 0 {
            let padded = width.saturating_add(WIDTH_QUANTUM - width % WIDTH_QUANTUM);
            findings.push(Finding::function(
                "io-width-multiple-of-32",
                format!(
                    "{role} `{name}` is {ty}: last-axis width {width} is not a multiple of 32, \
                     so rows would be read at a stride of {padded}"
                ),
            ));
        }
    }
    let bytes = byte_size(ty);
    if bytes < MIN_IO_BYTES {
        findings.push(Finding::function(
            "io-min-bytes",
            format!("{role} `{name}` is {ty}, {bytes} bytes, below the 49,152-byte minimum"),
        ));
    }
}

/// Several ports must all have the same byte size.
fn check_equal_sizes(ports: &[Port], rule: &'static str, findings: &mut Vec<Finding>) {
    let Some(first) = ports.first() else {
        return;
    };
    if ports.iter().all(|p| byte_size(p.ty) == byte_size(first.ty)) {
        return;
    }
    let sizes: Vec<String> = ports
        .iter()
        .map(|p| format!("`{}` {} B", p.name, byte_size(p.ty)))
        .collect();
    findings.push(Finding::function(
        rule,
        format!("{}s have different sizes: {}", first.role, sizes.join(", ")),
    ));
}
