//! `scaled_dot_product_attention` with its MIL definition:
//! `softmax(Q·Kᵀ/√E + mask) · V`, where a float mask is added to the scores and a bool mask
//! keeps the scores where it is true and sends the rest to -inf. (The ANE ignores the mask;
//! this device implements what the op means, so a comparison exposes the difference.)

use super::linalg::matmul;
use super::pool::Pool;
use super::reduce::softmax_into;
use super::tensor::{map_into, Tensor};
use crate::error::Result;

/// Evaluates the attention with the `[..., L, S]` scores shape `mil` resolved; the mask comes
/// with whether it is a bool mask. Cost: two batched gemms plus one pass each for scaling/masking
/// and softmax over the `[..., L, S]` scores.
pub(crate) fn sdpa(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    mask: Option<(&Tensor, bool)>,
    scores_shape: &[usize],
    out_shape: &[usize],
    pool: &mut Pool,
) -> Result<Tensor> {
    let shape = scores_shape;
    let scores = matmul(q, k, false, true, shape, pool)?;
    let e = q.shape()[q.rank() - 1];
    let scale = 1.0 / (e as f32).sqrt();
    let mut probs = pool.take_for_write(scores.numel());
    match mask {
        Some((m, true)) => map_into(
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
        Some((m, false)) => map_into(
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
    let mut weights = pool.take_for_write(probs.len());
    softmax_into(&probs, probs.len() / s.max(1), s, 1, &mut weights);
    pool.put(probs);
    let weights = Tensor::new(shape.to_vec(), weights);
    let out = matmul(&weights, v, false, false, out_shape, pool)?;
    if let Some(buf) = weights.into_storage() {
        pool.put(buf);
    }
    Ok(out)
}
