//! The resolved form of an op: what it computes with every parameter decoded, normalised and
//! checked against its argument shapes. Devices evaluate this form; none re-reads raw params.

use super::shapes::{ConvPlan, SlicePlan};
use crate::types::{DType, Type};

/// One op, validated: its meaning ([`OpKind`]) and the types of its outputs.
#[derive(Clone, Debug, PartialEq)]
pub struct Resolved {
    pub kind: OpKind,
    pub outputs: Vec<Type>,
}

/// What an op computes, with its parameters resolved against its argument shapes.
#[derive(Clone, Debug, PartialEq)]
pub enum OpKind {
    /// A `const`: its `val` attribute is the value.
    Const,
    /// `constexpr_affine_dequantize`: `(quantized_data - zero_point) * scale`, folded at compile time.
    ConstAffineDequantize(AffinePlan),
    /// `slice_by_size` and `slice_by_index`.
    Slice(SlicePlan),
    /// The resolved target shape.
    Reshape(Vec<usize>),
    /// Output axis `i` is input axis `perm[i]`.
    Transpose(Vec<usize>),
    Concat {
        axis: usize,
        interleave: bool,
    },
    Split {
        axis: usize,
        sizes: Vec<usize>,
    },
    Matmul {
        transpose_x: bool,
        transpose_y: bool,
    },
    Conv(ConvPlan),
    /// `x · weightᵀ (+ bias)`.
    Linear,
    Binary(BinaryKind),
    Unary(UnaryKind),
    /// `cond ? a : b`, broadcast.
    Select,
    Softmax {
        axis: usize,
    },
    Reduce {
        kind: ReduceKind,
        /// Sorted, distinct.
        axes: Vec<usize>,
        keep_dims: bool,
    },
    /// `softmax(Q·Kᵀ/√E + mask) · V`; a bool mask keeps scores where true.
    Attention {
        /// `[..., L, S]`, the shape the mask broadcasts to.
        scores: Vec<usize>,
        bool_mask: bool,
    },
    /// `clamp(round_half_even(x / scale) + zero_point)` into `dtype`'s range.
    Quantize {
        affine: AffinePlan,
        dtype: DType,
    },
    /// `(q - zero_point) * scale`.
    Dequantize(AffinePlan),
}

/// Elementwise ops of two broadcast operands. Comparisons give bool.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinaryKind {
    Add,
    Sub,
    Mul,
    RealDiv,
    Pow,
    Greater,
    Less,
}

/// Which `gelu` formula (MIL `mode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GeluMode {
    /// `x/2 · (1 + erf(x/√2))`.
    Exact,
    /// `x/2 · (1 + tanh(√(2/π) (x + 0.044715 x³)))`.
    Tanh,
    /// `x · sigmoid(1.702 x)`.
    Sigmoid,
}

/// Elementwise ops of one operand, with their scalar parameters decoded.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum UnaryKind {
    Sqrt,
    /// `1 / sqrt(x + epsilon)`.
    Rsqrt {
        epsilon: f32,
    },
    Exp,
    /// `log(x + epsilon)`.
    Log {
        epsilon: f32,
    },
    Tanh,
    Sigmoid,
    Silu,
    Relu,
    Gelu(GeluMode),
    /// `min(max(x, alpha), beta)`.
    Clip {
        alpha: f32,
        beta: f32,
    },
    /// Conversion to `dtype`; integer targets truncate toward zero and saturate.
    Cast(DType),
}

/// Which reduction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReduceKind {
    Sum,
    Mean,
    Max,
}

/// Where an affine scale and zero point apply: each is one value for the whole tensor
/// (`param_shape` is `[]`) or one per index of an axis (`[1, .., n, .., 1]`).
#[derive(Clone, Debug, PartialEq)]
pub struct AffinePlan {
    pub param_shape: Vec<usize>,
}

impl AffinePlan {
    /// Checks `scale` and `zero_point` element counts (1 or one per index of `axis`) against `shape`.
    pub fn new(
        shape: &[usize],
        scale_len: usize,
        zero_point_len: Option<usize>,
        axis: Option<i64>,
    ) -> Result<AffinePlan, String> {
        let zero_point_len = zero_point_len.unwrap_or(1);
        let param_shape = if scale_len > 1 || zero_point_len > 1 {
            let axis = axis.ok_or("a per-axis scale or zero_point needs `axis`")?;
            let a = super::normalize_axis(axis, shape.len())?;
            let mut s = vec![1; shape.len()];
            s[a] = shape[a];
            s
        } else {
            vec![]
        };
        let n: usize = param_shape.iter().product();
        for (what, len) in [("scale", scale_len), ("zero_point", zero_point_len)] {
            if len != 1 && len != n {
                return Err(format!(
                    "`{what}` has {len} values; give 1 or one per index of the axis ({n})"
                ));
            }
        }
        Ok(AffinePlan { param_shape })
    }
}
