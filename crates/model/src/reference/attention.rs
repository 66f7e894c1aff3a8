//! Causal scaled-dot-product attention with grouped-query heads, for one batch item.
//!
//! Shapes (token-major, one batch item of `seq` tokens): `q, out [seq, n_heads·D]`,
//! `k, v [seq, n_kv_heads·D]`, probabilities `[n_heads, seq, seq]` (only `s ≤ t` is used).
//! Query head `h` reads kv head [`ModelConfig::kv_head`]`(h)`; scores are scaled by `D^-1/2`.
//! Cost `O(n_heads · seq² · D)`; heads run in parallel with rayon.

use rayon::prelude::*;

use super::softmax::{softmax_backward, softmax_forward};
use crate::config::ModelConfig;

/// Column range of head `h` inside a row of width `heads·head_dim`.
fn head_cols(h: usize, head_dim: usize) -> std::ops::Range<usize> {
    h * head_dim..(h + 1) * head_dim
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Writes the attention output of every query head to `out` and returns the softmax
/// probabilities `[n_heads, seq, seq]` that the backward pass needs.
pub fn attention_forward(
    config: &ModelConfig,
    seq: usize,
    q: &[f32],
    k: &[f32],
    v: &[f32],
    out: &mut [f32],
) -> Vec<f32> {
    let (hd, q_dim, kv_dim) = (config.head_dim, config.q_dim(), config.kv_dim());
    let scale = 1.0 / (hd as f32).sqrt();
    // Each head computes into its own buffers; they are scattered into `out` afterwards because
    // a head's columns are interleaved with the other heads' in every row.
    let per_head: Vec<(Vec<f32>, Vec<f32>)> = (0..config.n_heads)
        .into_par_iter()
        .map(|h| {
            let (qc, kc) = (head_cols(h, hd), head_cols(config.kv_head(h), hd));
            let mut probs = vec![0.0; seq * seq];
            let mut o = vec![0.0; seq * hd];
            for t in 0..seq {
                let q_t = &q[t * q_dim..][qc.clone()];
                let p = &mut probs[t * seq..t * seq + t + 1];
                for (s, p_s) in p.iter_mut().enumerate() {
                    *p_s = scale * dot(q_t, &k[s * kv_dim..][kc.clone()]);
                }
                softmax_forward(p);
                let o_t = &mut o[t * hd..(t + 1) * hd];
                for (s, &p_s) in p.iter().enumerate() {
                    for (o_i, v_i) in o_t.iter_mut().zip(&v[s * kv_dim..][kc.clone()]) {
                        *o_i += p_s * v_i;
                    }
                }
            }
            (o, probs)
        })
        .collect();
    let mut all_probs = Vec::with_capacity(config.n_heads * seq * seq);
    for (h, (o, probs)) in per_head.into_iter().enumerate() {
        for t in 0..seq {
            out[t * q_dim..][head_cols(h, hd)].copy_from_slice(&o[t * hd..(t + 1) * hd]);
        }
        all_probs.extend(probs);
    }
    all_probs
}

/// Adds the gradients of [`attention_forward`] with respect to `q`, `k` and `v` to `dq`, `dk`
/// and `dv`, given the output gradient `dout` and the saved probabilities. A kv head shared by
/// several query heads receives the sum of their gradients.
#[allow(clippy::too_many_arguments)]
pub fn attention_backward(
    config: &ModelConfig,
    seq: usize,
    q: &[f32],
    k: &[f32],
    v: &[f32],
    probs: &[f32],
    dout: &[f32],
    dq: &mut [f32],
    dk: &mut [f32],
    dv: &mut [f32],
) {
    let (hd, q_dim, kv_dim) = (config.head_dim, config.q_dim(), config.kv_dim());
    let scale = 1.0 / (hd as f32).sqrt();
    // One task per kv head, owning the query heads that read it, so dk and dv need no locking.
    let per_group: Vec<(Vec<f32>, Vec<f32>, Vec<f32>)> = (0..config.n_kv_heads)
        .into_par_iter()
        .map(|g| {
            let ratio = config.gqa_ratio();
            let kc = head_cols(g, hd);
            let mut dq_g = vec![0.0; ratio * seq * hd];
            let mut dk_g = vec![0.0; seq * hd];
            let mut dv_g = vec![0.0; seq * hd];
            let mut dp = vec![0.0; seq];
            let mut ds = vec![0.0; seq];
            for r in 0..ratio {
                let h = g * ratio + r;
                let qc = head_cols(h, hd);
                for t in 0..seq {
                    let p = &probs[(h * seq + t) * seq..][..t + 1];
                    let do_t = &dout[t * q_dim..][qc.clone()];
                    let q_t = &q[t * q_dim..][qc.clone()];
                    for s in 0..=t {
                        let v_s = &v[s * kv_dim..][kc.clone()];
                        dp[s] = dot(do_t, v_s);
                        for (dv_i, do_i) in dv_g[s * hd..(s + 1) * hd].iter_mut().zip(do_t) {
                            *dv_i += p[s] * do_i;
                        }
                    }
                    ds[..=t].fill(0.0);
                    softmax_backward(&mut ds[..=t], p, &dp[..=t]);
                    let dq_t = &mut dq_g[(r * seq + t) * hd..][..hd];
                    for s in 0..=t {
                        let k_s = &k[s * kv_dim..][kc.clone()];
                        let w = scale * ds[s];
                        for i in 0..hd {
                            dq_t[i] += w * k_s[i];
                            dk_g[s * hd + i] += w * q_t[i];
                        }
                    }
                }
            }
            (dq_g, dk_g, dv_g)
        })
        .collect();
    let ratio = config.gqa_ratio();
    for (g, (dq_g, dk_g, dv_g)) in per_group.into_iter().enumerate() {
        for t in 0..seq {
            add(
                &mut dk[t * kv_dim..][head_cols(g, hd)],
                &dk_g[t * hd..][..hd],
            );
            add(
                &mut dv[t * kv_dim..][head_cols(g, hd)],
                &dv_g[t * hd..][..hd],
            );
            for r in 0..ratio {
                let h = g * ratio + r;
                add(
                    &mut dq[t * q_dim..][head_cols(h, hd)],
                    &dq_g[(r * seq + t) * hd..][..hd],
                );
            }
        }
    }
}

fn add(dst: &mut [f32], src: &[f32]) {
    for (d, s) in dst.iter_mut().zip(src) {
        *d += s;
    }
}
