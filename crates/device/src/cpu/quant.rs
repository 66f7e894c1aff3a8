//! Affine quantization: `quantize`, `dequantize` and the compile-time
//! `constexpr_affine_dequantize`. A scale and zero point are either one value for the whole
//! tensor or one per index along `axis`.

use super::pool::Pool;
use super::tensor::{map_into, Tensor};
use anetrain_mil::infer::AffinePlan;

/// Scale and zero point, shaped to broadcast against the data (`[1, .., n, .., 1]`).
#[derive(Clone, Debug)]
pub(crate) struct AffineParams {
    scale: Tensor,
    zero_point: Tensor,
}

impl AffineParams {
    /// Scale and zero point values (1 or one per index) laid out as `plan` resolved them.
    pub(crate) fn new(
        plan: &AffinePlan,
        scale: &[f32],
        zero_point: Option<&[f32]>,
    ) -> AffineParams {
        let n: usize = plan.param_shape.iter().product();
        let widen = |v: &[f32]| match v {
            [one] => Tensor::new(plan.param_shape.clone(), vec![*one; n]),
            _ => Tensor::new(plan.param_shape.clone(), v.to_vec()),
        };
        AffineParams {
            scale: widen(scale),
            zero_point: widen(zero_point.unwrap_or(&[0.0])),
        }
    }
}

/// `f([x, scale, zero_point])` per element, scale and zero point broadcast as `p` lays them out.
fn affine_map(
    x: &Tensor,
    p: &AffineParams,
    pool: &mut Pool,
    f: impl Fn([f32; 3]) -> f32 + Sync,
) -> Tensor {
    let shape = x.shape().to_vec();
    let mut out = pool.take_for_write(x.numel());
    let ops = [
        x.operand(&shape),
        p.scale.operand(&shape),
        p.zero_point.operand(&shape),
    ];
    map_into(&mut out, &shape, ops, f);
    Tensor::new(shape, out)
}

/// `clamp(round_half_even(x / scale) + zero_point, lo, hi)`.
pub(crate) fn quantize(x: &Tensor, p: &AffineParams, lo: f32, hi: f32, pool: &mut Pool) -> Tensor {
    affine_map(x, p, pool, |[v, s, z]| {
        ((v / s).round_ties_even() + z).clamp(lo, hi)
    })
}

/// `(q - zero_point) * scale`.
pub(crate) fn dequantize(x: &Tensor, p: &AffineParams, pool: &mut Pool) -> Tensor {
    affine_map(x, p, pool, |[q, s, z]| (q - z) * s)
}
