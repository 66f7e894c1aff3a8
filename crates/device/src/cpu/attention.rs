//! `scaled_dot_product_attention` with its MIL definition:
//! `softmax(Q·Kᵀ/√E + mask) · V`, where a float mask is added to the scores and a bool mask
//! keeps the scores where it is true and sends the rest to -inf. (The ANE ignores the mask;
//! this device implements what the op means, so a comparison exposes the difference.)

use super::linalg::{matmul, matmul_shape};
use super::pool::Pool;
use super::reduce::softmax_into;
use super::tensor::{map_into, Tensor};
use crate::error::Result;

/// Shapes resolved at compile time.
#[derive(Clone, Debug)]
pub(crate) struct SdpaParams {
    scores_shape: Vec<usize>,
    bool_mask: bool,
}

/// Checks `query [..., L, E]`, `key [..., S, E]`, `value [..., S, Ev]` and a mask that
/// broadcasts to `[..., L, S]`; returns the parameters and the output shape `[..., L, Ev]`.
pub(crate) fn sdpa_params(
    q: &[usize],
    k: &[usize],
    v: &[usize],
    mask: Option<(&[usize], bool)>,
) -> std::result::Result<(SdpaParams, Vec<usize>), String> {
    if q.len() < 2 || k.len() < 2 || v.len() < 2 {
        return Err("query, key and value must have rank ≥ 2".to_string());
    }
    let scores_shape = matmul_shape(q, k, false, true)?;
    if let Some((m, _)) = mask {
        let b = super::elementwise::broadcast_shapes(m, &scores_shape);
        if b.as_deref() != Some(scores_shape.as_slice()) {
            return Err(format!(
                "attn_mask {m:?} does not broadcast to the scores {scores_shape:?}"
            ));
        }
    }
    let out = matmul_shape(&scores_shape, v, false, false)?;
    let p = SdpaParams {
        scores_shape,
        bool_mask: mask.is_some_and(|(_, b)| b),
    };
    Ok((p, out))
}

/// Evaluates the attention. Cost: two batched gemms plus one pass each for scaling/masking
/// and softmax over the `[..., L, S]` scores.
pub(crate) fn sdpa(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    mask: Option<&Tensor>,
    p: &SdpaParams,
    out_shape: &[usize],
    pool: &mut Pool,
) -> Result<Tensor> {
    let shape = &p.scores_shape;
    let scores = matmul(q, k, false, true, shape, pool)?;
    let e = q.shape()[q.rank() - 1];
    let scale = 1.0 / (e as f32).sqrt();
    let mut probs = pool.take(scores.numel());
    match mask {
        Some(m) if p.bool_mask => map_into(
            &mut probs,
            shape,
            [scores.operand(shape), m.operand(shape)],
            |[s, keep]| {
                if keep != 0.0 {
                    s * scale
                } else {
                    f32::NEG_INFINITY
                }
            },
        ),
        Some(m) => map_into(
            &mut probs,
            shape,
            [scores.operand(shape), m.operand(shape)],
            |[s, add]| s * scale + add,
        ),
        None => map_into(&mut probs, shape, [scores.operand(shape)], |[s]| s * scale),
    }
    if let Some(buf) = scores.into_storage() {
        pool.put(buf);
    }
    let s = shape[shape.len() - 1];
    let mut weights = pool.take(probs.len());
    softmax_into(&probs, probs.len() / s.max(1), s, 1, &mut weights);
    pool.put(probs);
    let weights = Tensor::new(shape.clone(), weights);
    let out = matmul(&weights, v, false, false, out_shape, pool)?;
    if let Some(buf) = weights.into_storage() {
        pool.put(buf);
    }
    Ok(out)
}
