//! Elementwise ops: unary math, numpy-broadcast binary ops, `select`, `clip`, `cast`, and the
//! fp16 rounding the `F16` precision applies to op results.

use super::fast_exp;
use super::pool::Pool;
use super::tensor::{map_into, Tensor};
use anetrain_mil::infer::{BinaryKind, GeluMode, UnaryKind};
use anetrain_mil::DType;
use half::f16;
use rayon::prelude::*;

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + fast_exp::exp(-x))
}

/// erf by Abramowitz & Stegun 7.1.26 in f64 (absolute error below 1.5e-7, under f32's
/// resolution near 1, where gelu uses it).
fn erf(x: f32) -> f32 {
    let x = x as f64;
    let t = 1.0 / (1.0 + 0.327_591_1 * x.abs());
    let poly = t
        * (0.254_829_592
            + t * (-0.284_496_736
                + t * (1.421_413_741 + t * (-1.453_152_027 + t * 1.061_405_429))));
    let y = 1.0 - poly * (-x * x).exp();
    (if x < 0.0 { -y } else { y }) as f32
}

fn gelu(x: f32, mode: GeluMode) -> f32 {
    match mode {
        GeluMode::Exact => 0.5 * x * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2)),
        GeluMode::Tanh => {
            let c = (2.0 / std::f32::consts::PI).sqrt();
            0.5 * x * (1.0 + (c * (x + 0.044_715 * x * x * x)).tanh())
        }
        GeluMode::Sigmoid => x * sigmoid(1.702 * x),
    }
}

/// `cast` to `dtype`. Float targets are the identity here (fp16 rounding, in `F16` mode, is
/// the step's result rounding); integer targets truncate toward zero like numpy's `astype`,
/// which is what coremltools evaluates `cast` with, and saturate at the type's range.
fn cast(x: f32, dtype: DType) -> f32 {
    match dtype {
        DType::Int32 => x as i32 as f32,
        DType::Int8 => x as i8 as f32,
        DType::Uint8 => x as u8 as f32,
        DType::Bool => (x != 0.0) as u8 as f32,
        _ => x,
    }
}

/// Applies `op` to every element of `x`. Each arm instantiates its own loop so the math
/// inlines; cost is one evaluation of the function per element.
pub(crate) fn unary(x: &Tensor, op: UnaryKind, pool: &mut Pool) -> Tensor {
    let shape = x.shape().to_vec();
    let mut out = pool.take_for_write(x.numel());
    let o = || x.operand(&shape);
    match op {
        UnaryKind::Sqrt => map_into(&mut out, &shape, [o()], |[v]| v.sqrt()),
        UnaryKind::Rsqrt { epsilon: eps } => {
            map_into(&mut out, &shape, [o()], |[v]| 1.0 / (v + eps).sqrt())
        }
        UnaryKind::Exp => map_into(&mut out, &shape, [o()], |[v]| v.exp()),
        UnaryKind::Log { epsilon: eps } => map_into(&mut out, &shape, [o()], |[v]| (v + eps).ln()),
        UnaryKind::Tanh => map_into(&mut out, &shape, [o()], |[v]| v.tanh()),
        UnaryKind::Sigmoid => map_into(&mut out, &shape, [o()], |[v]| sigmoid(v)),
        UnaryKind::Silu => map_into(&mut out, &shape, [o()], |[v]| v * sigmoid(v)),
        UnaryKind::Relu => map_into(&mut out, &shape, [o()], |[v]| v.max(0.0)),
        UnaryKind::Gelu(mode) => map_into(&mut out, &shape, [o()], |[v]| gelu(v, mode)),
        UnaryKind::Clip {
            alpha: lo,
            beta: hi,
        } => map_into(&mut out, &shape, [o()], |[v]| v.max(lo).min(hi)),
        UnaryKind::Cast(t) => map_into(&mut out, &shape, [o()], |[v]| cast(v, t)),
    }
    Tensor::new(shape, out)
}

/// `op(x, y)` broadcast to `shape` (their numpy broadcast, checked at compile time).
pub(crate) fn binary(
    x: &Tensor,
    y: &Tensor,
    op: BinaryKind,
    shape: &[usize],
    pool: &mut Pool,
) -> Tensor {
    let mut out = pool.take_for_write(shape.iter().product());
    let ops = || [x.operand(shape), y.operand(shape)];
    match op {
        BinaryKind::Add => map_into(&mut out, shape, ops(), |[a, b]| a + b),
        BinaryKind::Sub => map_into(&mut out, shape, ops(), |[a, b]| a - b),
        BinaryKind::Mul => map_into(&mut out, shape, ops(), |[a, b]| a * b),
        BinaryKind::RealDiv => map_into(&mut out, shape, ops(), |[a, b]| a / b),
        BinaryKind::Pow => map_into(&mut out, shape, ops(), |[a, b]| a.powf(b)),
        BinaryKind::Greater => map_into(&mut out, shape, ops(), |[a, b]| (a > b) as u8 as f32),
        BinaryKind::Less => map_into(&mut out, shape, ops(), |[a, b]| (a < b) as u8 as f32),
    }
    Tensor::new(shape.to_vec(), out)
}

/// `cond ? a : b` elementwise, all three broadcast to `shape`.
pub(crate) fn select(
    cond: &Tensor,
    a: &Tensor,
    b: &Tensor,
    shape: &[usize],
    pool: &mut Pool,
) -> Tensor {
    let mut out = pool.take_for_write(shape.iter().product());
    let ops = [cond.operand(shape), a.operand(shape), b.operand(shape)];
    map_into(
        &mut out,
        shape,
        ops,
        |[c, x, y]| if c != 0.0 { x } else { y },
    );
    Tensor::new(shape.to_vec(), out)
}

/// Rounds every element to the nearest fp16 (ties to even; beyond ±65504 becomes ±inf), as
/// the ANE stores every fp16 result.
pub(crate) fn round_to_f16(values: &mut [f32]) {
    values
        .par_chunks_mut(1 << 14)
        .for_each(|c| c.iter_mut().for_each(|v| *v = f16::from_f32(*v).to_f32()));
}
