//! Affine quantization: `quantize`, `dequantize` and the compile-time
//! `constexpr_affine_dequantize`. A scale and zero point are either one value for the whole
//! tensor or one per index along `axis`.

use super::pool::Pool;
use super::shape_ops::normalize_axis;
use super::tensor::{map_into, Tensor};

/// Scale and zero point, shaped to broadcast against the data (`[1, .., n, .., 1]`).
#[derive(Clone, Debug)]
pub(crate) struct AffineParams {
    scale: Tensor,
    zero_point: Tensor,
}

/// Checks `scale`/`zero_point` (one value, or one per index of `axis`) against `shape`.
pub(crate) fn affine_params(
    shape: &[usize],
    scale: Vec<f32>,
    zero_point: Option<Vec<f32>>,
    axis: Option<i64>,
) -> Result<AffineParams, String> {
    let zero_point = zero_point.unwrap_or_else(|| vec![0.0]);
    let per_axis = scale.len() > 1 || zero_point.len() > 1;
    let param_shape = if per_axis {
        let axis = axis.ok_or("a per-axis scale or zero_point needs `axis`")?;
        let a = normalize_axis(axis, shape.len())?;
        let mut s = vec![1; shape.len()];
        s[a] = shape[a];
        s
    } else {
        vec![]
    };
    let n: usize = param_shape.iter().product();
    let widen = |v: Vec<f32>, what: &str| -> Result<Tensor, String> {
        match v.len() {
            1 => Ok(Tensor::new(param_shape.clone(), vec![v[0]; n])),
            len if len == n => Ok(Tensor::new(param_shape.clone(), v)),
            len => Err(format!(
                "`{what}` has {len} values; give 1 or one per index of the axis ({n})"
            )),
        }
    };
    Ok(AffineParams {
        scale: widen(scale, "scale")?,
        zero_point: widen(zero_point, "zero_point")?,
    })
}

/// `clamp(round_half_even(x / scale) + zero_point, lo, hi)`.
pub(crate) fn quantize(x: &Tensor, p: &AffineParams, lo: f32, hi: f32, pool: &mut Pool) -> Tensor {
    let shape = x.shape().to_vec();
    let mut out = pool.take(x.numel());
    let ops = [
        x.operand(&shape),
        p.scale.operand(&shape),
        p.zero_point.operand(&shape),
    ];
    map_into(&mut out, &shape, ops, |[v, s, z]| {
        ((v / s).round_ties_even() + z).clamp(lo, hi)
    });
    Tensor::new(shape, out)
}

/// `(q - zero_point) * scale`.
pub(crate) fn dequantize(x: &Tensor, p: &AffineParams, pool: &mut Pool) -> Tensor {
    let shape = x.shape().to_vec();
    let mut out = pool.take(x.numel());
    let ops = [
        x.operand(&shape),
        p.scale.operand(&shape),
        p.zero_point.operand(&shape),
    ];
    map_into(&mut out, &shape, ops, |[q, s, z]| (q - z) * s);
    Tensor::new(shape, out)
}
