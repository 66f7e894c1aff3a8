//! The op catalogue of the builder: one method per MIL op, each typing its result and passing
//! parameters as named consts.

use super::{type_err, Builder, ConvOptions, NodeArg, Var};
use crate::error::Result;
use crate::ops::Op;
use crate::types::DType;

impl Builder {
    /// `x[begin .. begin + size]` on every axis.
    pub fn slice(&mut self, x: Var, begin: &[usize], size: &[usize]) -> Result<Var> {
        let (b, s) = (self.usizes(begin), self.usizes(size));
        self.push1(
            Op::SliceBySize,
            vec![
                ("x", NodeArg::One(x)),
                ("begin", NodeArg::One(b)),
                ("size", NodeArg::One(s)),
            ],
        )
    }

    /// `x[begin:end:stride]` on every axis (`slice_by_index`, positive strides).
    pub fn slice_by_index(
        &mut self,
        x: Var,
        begin: &[usize],
        end: &[usize],
        stride: &[usize],
    ) -> Result<Var> {
        let (b, e, s) = (self.usizes(begin), self.usizes(end), self.usizes(stride));
        self.push1(
            Op::SliceByIndex,
            vec![
                ("x", NodeArg::One(x)),
                ("begin", NodeArg::One(b)),
                ("end", NodeArg::One(e)),
                ("stride", NodeArg::One(s)),
            ],
        )
    }

    /// `x` viewed with a new shape of the same size.
    pub fn reshape(&mut self, x: Var, shape: &[usize]) -> Result<Var> {
        let s = self.usizes(shape);
        self.push1(
            Op::Reshape,
            vec![("x", NodeArg::One(x)), ("shape", NodeArg::One(s))],
        )
    }

    /// Axes of `x` permuted: output axis i is input axis `perm[i]`.
    pub fn transpose(&mut self, x: Var, perm: &[usize]) -> Result<Var> {
        let p = self.usizes(perm);
        self.push1(
            Op::Transpose,
            vec![("x", NodeArg::One(x)), ("perm", NodeArg::One(p))],
        )
    }

    /// Swaps the last two axes.
    pub fn transpose_last(&mut self, x: Var) -> Result<Var> {
        let r = self.shape(x).len();
        if r < 2 {
            return Err(type_err(Op::Transpose, "transpose_last needs rank >= 2"));
        }
        let mut perm: Vec<usize> = (0..r).collect();
        perm.swap(r - 1, r - 2);
        self.transpose(x, &perm)
    }

    /// Values joined along `axis` (negative counts from the end).
    pub fn concat(&mut self, values: &[Var], axis: i64) -> Result<Var> {
        let (a, i) = (self.int(axis), self.flag(false));
        self.push1(
            Op::Concat,
            vec![
                ("values", NodeArg::Tuple(values.to_vec())),
                ("axis", NodeArg::One(a)),
                ("interleave", NodeArg::One(i)),
            ],
        )
    }

    /// `x` cut along `axis` into pieces of the given sizes.
    pub fn split(&mut self, x: Var, sizes: &[usize], axis: i64) -> Result<Vec<Var>> {
        let (s, a) = (self.usizes(sizes), self.int(axis));
        self.push(
            Op::Split,
            vec![
                ("x", NodeArg::One(x)),
                ("split_sizes", NodeArg::One(s)),
                ("axis", NodeArg::One(a)),
            ],
            vec![],
        )
    }

    /// `x @ y` over the last two axes (batch axes broadcast).
    pub fn matmul(&mut self, x: Var, y: Var) -> Result<Var> {
        self.matmul_t(x, y, false, false)
    }

    /// `op(x) @ op(y)` where `op` transposes the last two axes when its flag is set.
    pub fn matmul_t(
        &mut self,
        x: Var,
        y: Var,
        transpose_x: bool,
        transpose_y: bool,
    ) -> Result<Var> {
        let (tx, ty) = (self.flag(transpose_x), self.flag(transpose_y));
        self.push1(
            Op::Matmul,
            vec![
                ("x", NodeArg::One(x)),
                ("y", NodeArg::One(y)),
                ("transpose_x", NodeArg::One(tx)),
                ("transpose_y", NodeArg::One(ty)),
            ],
        )
    }

    /// 2-D convolution of `x` `[N, Cin, H, W]` with `weight` `[Cout, Cin/groups, kH, kW]` (no bias).
    pub fn conv(&mut self, x: Var, weight: Var, options: &ConvOptions) -> Result<Var> {
        let strides = self.usizes(&options.strides);
        let dilations = self.usizes(&options.dilations);
        let pad = self.usizes(&options.pad);
        let pad_type = self.string(if options.pad == [0; 4] {
            "valid"
        } else {
            "custom"
        });
        let groups = self.int(options.groups as i64);
        self.push1(
            Op::Conv,
            vec![
                ("x", NodeArg::One(x)),
                ("weight", NodeArg::One(weight)),
                ("strides", NodeArg::One(strides)),
                ("pad_type", NodeArg::One(pad_type)),
                ("pad", NodeArg::One(pad)),
                ("dilations", NodeArg::One(dilations)),
                ("groups", NodeArg::One(groups)),
            ],
        )
    }

    /// `x W^T + b` over the last axis of `x`, with `weight` `[out, in]`.
    pub fn linear(&mut self, x: Var, weight: Var, bias: Option<Var>) -> Result<Var> {
        let mut args = vec![("x", NodeArg::One(x)), ("weight", NodeArg::One(weight))];
        if let Some(b) = bias {
            args.push(("bias", NodeArg::One(b)));
        }
        self.push1(Op::Linear, args)
    }

    /// `x + y` (broadcasting).
    pub fn add(&mut self, x: Var, y: Var) -> Result<Var> {
        self.binary(Op::Add, x, y)
    }

    /// `x - y` (broadcasting).
    pub fn sub(&mut self, x: Var, y: Var) -> Result<Var> {
        self.binary(Op::Sub, x, y)
    }

    /// `x * y` (broadcasting).
    pub fn mul(&mut self, x: Var, y: Var) -> Result<Var> {
        self.binary(Op::Mul, x, y)
    }

    /// `x / y` (broadcasting).
    pub fn div(&mut self, x: Var, y: Var) -> Result<Var> {
        self.binary(Op::RealDiv, x, y)
    }

    /// `x ^ y` (broadcasting).
    pub fn pow(&mut self, x: Var, y: Var) -> Result<Var> {
        self.binary(Op::Pow, x, y)
    }

    /// `x > y` as bool.
    pub fn greater(&mut self, x: Var, y: Var) -> Result<Var> {
        self.binary(Op::Greater, x, y)
    }

    /// `x < y` as bool.
    pub fn less(&mut self, x: Var, y: Var) -> Result<Var> {
        self.binary(Op::Less, x, y)
    }

    /// `x * s` for a scalar `s` in `x`'s dtype.
    pub fn scale(&mut self, x: Var, s: f32) -> Result<Var> {
        let c = self.scalar(self.dtype(x), s);
        self.mul(x, c)
    }

    /// `x + s` for a scalar `s` in `x`'s dtype.
    pub fn add_scalar(&mut self, x: Var, s: f32) -> Result<Var> {
        let c = self.scalar(self.dtype(x), s);
        self.add(x, c)
    }

    pub fn sqrt(&mut self, x: Var) -> Result<Var> {
        self.unary(Op::Sqrt, x)
    }

    pub fn rsqrt(&mut self, x: Var) -> Result<Var> {
        self.unary(Op::Rsqrt, x)
    }

    pub fn exp(&mut self, x: Var) -> Result<Var> {
        self.unary(Op::Exp, x)
    }

    pub fn log(&mut self, x: Var) -> Result<Var> {
        self.unary(Op::Log, x)
    }

    pub fn tanh(&mut self, x: Var) -> Result<Var> {
        self.unary(Op::Tanh, x)
    }

    pub fn sigmoid(&mut self, x: Var) -> Result<Var> {
        self.unary(Op::Sigmoid, x)
    }

    pub fn silu(&mut self, x: Var) -> Result<Var> {
        self.unary(Op::Silu, x)
    }

    pub fn relu(&mut self, x: Var) -> Result<Var> {
        self.unary(Op::Relu, x)
    }

    /// GELU with `mode` `EXACT`, `TANH_APPROXIMATION` or `SIGMOID_APPROXIMATION`.
    pub fn gelu(&mut self, x: Var, mode: &str) -> Result<Var> {
        let m = self.string(mode);
        self.push1(
            Op::Gelu,
            vec![("x", NodeArg::One(x)), ("mode", NodeArg::One(m))],
        )
    }

    /// Softmax along `axis`.
    pub fn softmax(&mut self, x: Var, axis: i64) -> Result<Var> {
        let a = self.int(axis);
        self.push1(
            Op::Softmax,
            vec![("x", NodeArg::One(x)), ("axis", NodeArg::One(a))],
        )
    }

    fn reduce(&mut self, op: Op, x: Var, axes: &[i64], keep_dims: bool) -> Result<Var> {
        let (a, k) = (self.ints(axes), self.flag(keep_dims));
        self.push1(
            op,
            vec![
                ("x", NodeArg::One(x)),
                ("axes", NodeArg::One(a)),
                ("keep_dims", NodeArg::One(k)),
            ],
        )
    }

    /// Sum over `axes`.
    pub fn reduce_sum(&mut self, x: Var, axes: &[i64], keep_dims: bool) -> Result<Var> {
        self.reduce(Op::ReduceSum, x, axes, keep_dims)
    }

    /// Mean over `axes`.
    pub fn reduce_mean(&mut self, x: Var, axes: &[i64], keep_dims: bool) -> Result<Var> {
        self.reduce(Op::ReduceMean, x, axes, keep_dims)
    }

    /// Maximum over `axes`.
    pub fn reduce_max(&mut self, x: Var, axes: &[i64], keep_dims: bool) -> Result<Var> {
        self.reduce(Op::ReduceMax, x, axes, keep_dims)
    }

    /// `x` clamped to `[lo, hi]`.
    pub fn clip(&mut self, x: Var, lo: f32, hi: f32) -> Result<Var> {
        let dt = self.dtype(x);
        let (a, b) = (self.scalar(dt, lo), self.scalar(dt, hi));
        self.push1(
            Op::Clip,
            vec![
                ("x", NodeArg::One(x)),
                ("alpha", NodeArg::One(a)),
                ("beta", NodeArg::One(b)),
            ],
        )
    }

    /// `x` converted to `dtype`.
    pub fn cast(&mut self, x: Var, dtype: DType) -> Result<Var> {
        let d = self.string(dtype.name());
        self.push1(
            Op::Cast,
            vec![("x", NodeArg::One(x)), ("dtype", NodeArg::One(d))],
        )
    }

    /// `cond ? a : b` elementwise (broadcasting).
    pub fn select(&mut self, cond: Var, a: Var, b: Var) -> Result<Var> {
        self.push1(
            Op::Select,
            vec![
                ("cond", NodeArg::One(cond)),
                ("a", NodeArg::One(a)),
                ("b", NodeArg::One(b)),
            ],
        )
    }

    /// `softmax(q kᵀ / √d + mask) v`. Reference semantics only: the ANE ignores the mask.
    pub fn scaled_dot_product_attention(
        &mut self,
        q: Var,
        k: Var,
        v: Var,
        mask: Option<Var>,
    ) -> Result<Var> {
        let mut args = vec![
            ("query", NodeArg::One(q)),
            ("key", NodeArg::One(k)),
            ("value", NodeArg::One(v)),
        ];
        if let Some(m) = mask {
            args.push(("attn_mask", NodeArg::One(m)));
        }
        self.push1(Op::ScaledDotProductAttention, args)
    }

    /// `round(x / scale)` saturated to int8.
    pub fn quantize(&mut self, x: Var, scale: f32) -> Result<Var> {
        let s = self.scalar(self.dtype(x), scale);
        let d = self.string("int8");
        self.push1(
            Op::Quantize,
            vec![
                ("input", NodeArg::One(x)),
                ("scale", NodeArg::One(s)),
                ("output_dtype", NodeArg::One(d)),
            ],
        )
    }

    /// `q * scale` in `dtype`.
    pub fn dequantize(&mut self, q: Var, scale: f32, dtype: DType) -> Result<Var> {
        let s = self.scalar(dtype, scale);
        self.push1(
            Op::Dequantize,
            vec![("input", NodeArg::One(q)), ("scale", NodeArg::One(s))],
        )
    }
}
