//! The device engine's buffers, allocated once per engine: what each layer's forward keeps
//! for its backward, each layer's backward results, and the shared scratch.

use super::block::NormGrads;
use crate::config::ModelConfig;
use crate::lora::LoraLinear;

/// Sizes used everywhere below (see the table in [`crate::kernels`]).
#[derive(Clone, Copy)]
pub(super) struct Dims {
    pub(super) d: usize,
    pub(super) q: usize,
    pub(super) kv: usize,
    pub(super) h: usize,
    pub(super) s: usize,
    pub(super) v: usize,
}

/// What one layer's forward keeps for its backward, each `[C][S]`.
pub(super) struct LayerActs {
    pub(super) x: Vec<f32>,
    pub(super) xn: Vec<f32>,
    pub(super) inv_attn: Vec<f32>,
    /// Projections before QK-norm and their statistics (empty without QK-norm).
    pub(super) q_pre: Vec<f32>,
    pub(super) k_pre: Vec<f32>,
    pub(super) q_inv: Vec<f32>,
    pub(super) k_inv: Vec<f32>,
    /// q, k (normed and rotated) and v stacked: the attention kernels' input.
    pub(super) qkv: Vec<f32>,
    pub(super) attn: Vec<f32>,
    pub(super) h: Vec<f32>,
    pub(super) hn: Vec<f32>,
    pub(super) inv_ffn: Vec<f32>,
    /// `ffn_up_fwd`'s output: h1, h3, act stacked.
    pub(super) up: Vec<f32>,
    /// Per projection (indexed by `Linear as usize`), the adapter's `s·A x [S, r]` that its
    /// backward reuses; empty where the projection is not adapted (sized by
    /// [`LayerActs::fit_adapter`]).
    pub(super) lora_su: [Vec<f32>; 7],
}

/// One layer's backward results that its dW jobs read while the next layer down runs.
pub(super) struct LayerBack {
    pub(super) d_out: Vec<f32>,
    pub(super) dh13: Vec<f32>,
    pub(super) dh: Vec<f32>,
    pub(super) dqkv: Vec<f32>,
}

/// Buffers reused by every layer and the classifier.
pub(super) struct Scratch {
    pub(super) tmp: Vec<f32>,
    pub(super) d_act: Vec<f32>,
    pub(super) dhn: Vec<f32>,
    pub(super) d_attn: Vec<f32>,
    pub(super) dxn: Vec<f32>,
    pub(super) dqk_pre: Vec<f32>,
    pub(super) norm: Vec<f32>,
    pub(super) x_final: Vec<f32>,
    pub(super) inv_final: Vec<f32>,
    pub(super) xf: Vec<f32>,
    pub(super) logits: Vec<f32>,
    pub(super) row_loss: Vec<f64>,
    pub(super) dxf: Vec<f32>,
    pub(super) dx: Vec<f32>,
    pub(super) tokens: Vec<u32>,
    pub(super) targets: Vec<u32>,
    /// Where an adapter pass writes the unused gradients of the frozen norm gains: the final
    /// norm's `[D]`, then each layer's (see `NormGrads::throwaway`).
    pub(super) frozen_norm_grads: Vec<f32>,
    /// The adapter backward's `g = s·dy B [S, r]` (empty without an adapter).
    pub(super) lora_g: Vec<f32>,
}

fn zeros(n: usize) -> Vec<f32> {
    vec![0.0; n]
}

impl LayerActs {
    /// Buffers for one layer; the QK-norm ones are empty when the model has no QK-norm.
    pub(super) fn new(c: &ModelConfig, dims: Dims) -> LayerActs {
        let Dims { d, q, kv, h, s, .. } = dims;
        let qk = |n: usize| zeros(if c.qk_norm { n } else { 0 });
        LayerActs {
            x: zeros(d * s),
            xn: zeros(d * s),
            inv_attn: zeros(s),
            q_pre: qk(q * s),
            k_pre: qk(kv * s),
            q_inv: qk(c.n_heads * s),
            k_inv: qk(c.n_kv_heads * s),
            qkv: zeros((q + 2 * kv) * s),
            attn: zeros(q * s),
            h: zeros(d * s),
            hn: zeros(d * s),
            inv_ffn: zeros(s),
            up: zeros(3 * h * s),
            lora_su: Default::default(),
        }
    }

    /// Sizes [`LayerActs::lora_su`] for the adapter's pairs on this layer (`s` tokens); a
    /// no-op when they already fit, as on every step after the first.
    pub(super) fn fit_adapter(&mut self, pairs: [Option<&LoraLinear>; 7], s: usize) {
        for (su, pair) in self.lora_su.iter_mut().zip(pairs) {
            su.resize(pair.map_or(0, |p| p.rank() * s), 0.0);
        }
    }
}

impl LayerBack {
    pub(super) fn new(dims: Dims) -> LayerBack {
        let Dims { d, q, kv, h, s, .. } = dims;
        LayerBack {
            d_out: zeros(d * s),
            dh13: zeros(2 * h * s),
            dh: zeros(d * s),
            dqkv: zeros((q + 2 * kv) * s),
        }
    }
}

impl Scratch {
    pub(super) fn new(c: &ModelConfig, dims: Dims) -> Scratch {
        let Dims { d, q, kv, h, s, v } = dims;
        // Norm statistics scratch: one row per head for QK-norm, one row for the layer norms.
        let norm_rows = if c.qk_norm { c.n_heads } else { 1 };
        Scratch {
            tmp: zeros(d * s),
            d_act: zeros(h * s),
            dhn: zeros(d * s),
            d_attn: zeros(q * s),
            dxn: zeros(d * s),
            dqk_pre: zeros((q + kv) * s),
            norm: zeros(norm_rows * s),
            x_final: zeros(d * s),
            inv_final: zeros(s),
            xf: zeros(d * s),
            logits: zeros(s * v),
            row_loss: vec![0.0; s],
            dxf: zeros(d * s),
            dx: zeros(d * s),
            tokens: vec![0; s],
            targets: vec![0; s],
            frozen_norm_grads: zeros(d + c.n_layers * NormGrads::throwaway_len(d, c.head_dim)),
            lora_g: Vec::new(),
        }
    }
}
