//! The op set anetrain uses, with the exact MIL argument names of each op.

use std::fmt;

/// What an op argument must be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArgKind {
    /// Any value computed by the program (or an input).
    Tensor,
    /// A compile-time constant (shape, axis, flag): must name a `const` op's output.
    Param,
    /// A parenthesised list of values, `values = (a, b, c)`.
    TensorTuple,
}

/// One named argument of an op.
#[derive(Clone, Copy, Debug)]
pub struct ArgSpec {
    pub name: &'static str,
    pub kind: ArgKind,
    pub optional: bool,
}

const fn t(name: &'static str) -> ArgSpec {
    ArgSpec {
        name,
        kind: ArgKind::Tensor,
        optional: false,
    }
}
const fn p(name: &'static str) -> ArgSpec {
    ArgSpec {
        name,
        kind: ArgKind::Param,
        optional: false,
    }
}
const fn opt_t(name: &'static str) -> ArgSpec {
    ArgSpec {
        name,
        kind: ArgKind::Tensor,
        optional: true,
    }
}
const fn opt_p(name: &'static str) -> ArgSpec {
    ArgSpec {
        name,
        kind: ArgKind::Param,
        optional: true,
    }
}

macro_rules! ops {
    ($($variant:ident => $name:literal [$($arg:expr),* $(,)?] $(attrs [$($attr:literal),*])?;)*) => {
        /// A MIL operation kind.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Op { $($variant),* }

        impl Op {
            /// Every op, in declaration order.
            pub const ALL: &'static [Op] = &[$(Op::$variant),*];

            /// The MIL spelling of the op.
            pub fn name(self) -> &'static str {
                match self { $(Op::$variant => $name),* }
            }

            /// The op's parenthesised arguments, with their exact MIL names.
            pub fn args(self) -> &'static [ArgSpec] {
                match self { $(Op::$variant => { const A: &[ArgSpec] = &[$($arg),*]; A }),* }
            }

            /// Bracket attributes besides `name` (`val` for const, all of `constexpr_affine_dequantize`'s).
            pub fn attrs(self) -> &'static [&'static str] {
                match self { $(Op::$variant => &[$($($attr),*)?]),* }
            }
        }
    };
}

ops! {
    Const => "const" [] attrs ["val"];
    SliceBySize => "slice_by_size" [t("x"), p("begin"), p("size")];
    SliceByIndex => "slice_by_index" [t("x"), p("begin"), p("end"), opt_p("stride"), opt_p("begin_mask"), opt_p("end_mask"), opt_p("squeeze_mask")];
    Reshape => "reshape" [t("x"), p("shape")];
    Transpose => "transpose" [t("x"), p("perm")];
    Concat => "concat" [ArgSpec { name: "values", kind: ArgKind::TensorTuple, optional: false }, p("axis"), opt_p("interleave")];
    Split => "split" [t("x"), opt_p("num_splits"), opt_p("split_sizes"), p("axis")];
    Matmul => "matmul" [t("x"), t("y"), opt_p("transpose_x"), opt_p("transpose_y")];
    Conv => "conv" [t("x"), t("weight"), opt_p("strides"), opt_p("pad_type"), opt_p("pad"), opt_p("dilations"), opt_p("groups")];
    Linear => "linear" [t("x"), t("weight"), opt_t("bias")];
    Add => "add" [t("x"), t("y")];
    Sub => "sub" [t("x"), t("y")];
    Mul => "mul" [t("x"), t("y")];
    RealDiv => "real_div" [t("x"), t("y")];
    Pow => "pow" [t("x"), t("y")];
    Greater => "greater" [t("x"), t("y")];
    Less => "less" [t("x"), t("y")];
    Sqrt => "sqrt" [t("x")];
    Rsqrt => "rsqrt" [t("x"), opt_p("epsilon")];
    Exp => "exp" [t("x")];
    Log => "log" [t("x"), opt_p("epsilon")];
    Tanh => "tanh" [t("x")];
    Sigmoid => "sigmoid" [t("x")];
    Silu => "silu" [t("x")];
    Relu => "relu" [t("x")];
    Gelu => "gelu" [t("x"), opt_p("mode")];
    Softmax => "softmax" [t("x"), opt_p("axis")];
    ReduceSum => "reduce_sum" [t("x"), opt_p("axes"), opt_p("keep_dims")];
    ReduceMean => "reduce_mean" [t("x"), opt_p("axes"), opt_p("keep_dims")];
    ReduceMax => "reduce_max" [t("x"), opt_p("axes"), opt_p("keep_dims")];
    Clip => "clip" [t("x"), p("alpha"), p("beta")];
    Cast => "cast" [t("x"), p("dtype")];
    Select => "select" [t("cond"), t("a"), t("b")];
    ScaledDotProductAttention => "scaled_dot_product_attention" [t("query"), t("key"), t("value"), opt_t("attn_mask")];
    Quantize => "quantize" [t("input"), opt_p("zero_point"), p("scale"), opt_p("axis"), p("output_dtype")];
    Dequantize => "dequantize" [t("input"), opt_p("zero_point"), p("scale"), opt_p("axis")];
    ConstexprAffineDequantize => "constexpr_affine_dequantize" [] attrs ["axis", "quantized_data", "scale", "zero_point"];
}

impl Op {
    /// Looks an op up by its MIL spelling.
    pub fn from_name(name: &str) -> Option<Op> {
        Op::ALL.iter().copied().find(|op| op.name() == name)
    }

    /// The spec of argument `name`, if the op has one.
    pub fn arg(self, name: &str) -> Option<&'static ArgSpec> {
        self.args().iter().find(|a| a.name == name)
    }

    /// Ops whose output is known at compile time (no parenthesised inputs).
    pub fn is_constant(self) -> bool {
        matches!(self, Op::Const | Op::ConstexprAffineDequantize)
    }

    /// Elementwise ops of one input.
    pub fn is_unary(self) -> bool {
        matches!(
            self,
            Op::Sqrt
                | Op::Rsqrt
                | Op::Exp
                | Op::Log
                | Op::Tanh
                | Op::Sigmoid
                | Op::Silu
                | Op::Relu
                | Op::Gelu
        )
    }

    /// Elementwise ops of two broadcast inputs `x`, `y`.
    pub fn is_binary(self) -> bool {
        matches!(
            self,
            Op::Add | Op::Sub | Op::Mul | Op::RealDiv | Op::Pow | Op::Greater | Op::Less
        )
    }

    /// Reductions over `axes`.
    pub fn is_reduction(self) -> bool {
        matches!(self, Op::ReduceSum | Op::ReduceMean | Op::ReduceMax)
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
