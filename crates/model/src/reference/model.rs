//! The whole transformer: forward pass with saved activations, and the hand-written backward
//! pass that walks the same steps in reverse.
//!
//! All activations are token-major `[n, width]` with `n = batch·seq` rows; row `b·seq + t` is
//! token `t` of batch item `b`.

use crate::config::ModelConfig;
use crate::error::{ModelError, Result};
use crate::params::{LayerParams, Linear, Params};

use super::attention::{attention_backward, attention_forward};
use super::cross_entropy::cross_entropy_forward_backward;
use super::linear::{linear_backward_input, linear_backward_weight, linear_forward};
use super::norm::{rmsnorm_backward, rmsnorm_forward};
use super::rope::RopeTable;
use super::swiglu::{swiglu_backward, swiglu_forward};

/// Next-token logits `[batch, seq, vocab]`, row-major.
#[derive(Clone, Debug, PartialEq)]
pub struct Logits {
    /// Number of sequences.
    pub batch: usize,
    /// Tokens per sequence.
    pub seq: usize,
    /// Vocabulary size.
    pub vocab: usize,
    /// The values, `data[(b·seq + t)·vocab + token]`.
    pub data: Vec<f32>,
}

impl Logits {
    /// The logits predicting the token after position `t` of sequence `b`.
    pub fn at(&self, b: usize, t: usize) -> &[f32] {
        &self.data[(b * self.seq + t) * self.vocab..][..self.vocab]
    }
}

/// Logits of every position of every sequence in `tokens` (`[batch][seq]`, equal lengths).
pub fn forward(config: &ModelConfig, params: &Params, tokens: &[Vec<u32>]) -> Result<Logits> {
    let (batch, seq, ids) = flatten(config, tokens, 0)?;
    params.check_matches(config)?;
    let pass = Pass::new(config, params, batch, seq);
    let (logits, _) = pass.forward(&ids, false);
    Ok(Logits {
        batch,
        seq,
        vocab: config.vocab_size,
        data: logits,
    })
}

/// Next-token cross-entropy over `rows` (`[batch][seq+1]`: inputs `row[..seq]`, targets
/// `row[1..]`), weighted by `weights` (`[batch·seq]`, row-major; `None`: all 1) as
/// `Σ w·CE / Σ w`, and its gradient with respect to every parameter, under the same names. The
/// loss is returned in f64 because it is summed in f64; finite-difference checks need those
/// digits.
pub fn loss_and_grads(
    config: &ModelConfig,
    params: &Params,
    rows: &[Vec<u32>],
    weights: Option<&[f32]>,
) -> Result<(f64, Params)> {
    let (batch, seq_plus_one, ids) = flatten(config, rows, 2)?;
    params.check_matches(config)?;
    let seq = seq_plus_one - 1;
    if let Some(w) = weights {
        if w.len() != batch * seq {
            return Err(ModelError::Input(format!(
                "{} target weights for {batch} rows of {seq} targets; give one weight per target",
                w.len()
            )));
        }
    }
    let mut inputs = Vec::with_capacity(batch * seq);
    let mut targets = Vec::with_capacity(batch * seq);
    for row in ids.chunks_exact(seq_plus_one) {
        inputs.extend_from_slice(&row[..seq]);
        targets.extend_from_slice(&row[1..]);
    }
    let pass = Pass::new(config, params, batch, seq);
    let (logits, saved) = pass.forward(&inputs, true);
    let mut dlogits = vec![0.0; logits.len()];
    let loss =
        cross_entropy_forward_backward(&mut dlogits, &logits, &targets, weights, config.vocab_size);
    let grads = pass.backward(&inputs, &saved, &dlogits);
    Ok((loss, grads))
}

/// Checks a batch (equal row lengths of at least `min_len`, ids inside the vocabulary) and
/// returns `(batch, row_len, ids row-major)`.
fn flatten(
    config: &ModelConfig,
    rows: &[Vec<u32>],
    min_len: usize,
) -> Result<(usize, usize, Vec<u32>)> {
    let len = rows.first().map_or(0, Vec::len);
    if rows.is_empty() || len < min_len.max(1) {
        return Err(ModelError::Input(format!(
            "the batch needs at least one row of at least {} tokens",
            min_len.max(1)
        )));
    }
    let mut ids = Vec::with_capacity(rows.len() * len);
    for (b, row) in rows.iter().enumerate() {
        if row.len() != len {
            return Err(ModelError::Input(format!(
                "row {b} has {} tokens but row 0 has {len}; all rows of a batch must have the same length",
                row.len()
            )));
        }
        if let Some(&bad) = row.iter().find(|&&t| t as usize >= config.vocab_size) {
            return Err(ModelError::Input(format!(
                "row {b} holds token id {bad}, outside the vocabulary of {} tokens; use the tokenizer that matches the model",
                config.vocab_size
            )));
        }
        ids.extend_from_slice(row);
    }
    Ok((rows.len(), len, ids))
}

/// Activations one block saves for its backward pass.
struct BlockSaved {
    /// Block input `[n, dim]`.
    x: Vec<f32>,
    attn_inv_rms: Vec<f32>,
    /// `input_layernorm(x)` `[n, dim]`.
    xn: Vec<f32>,
    /// Projections before QK-norm (empty without QK-norm) `[n, q_dim]`, `[n, kv_dim]`.
    q_pre: Vec<f32>,
    k_pre: Vec<f32>,
    q_inv_rms: Vec<f32>,
    k_inv_rms: Vec<f32>,
    /// Queries and keys after QK-norm and RoPE, values `[n, q_dim]`, `[n, kv_dim]`, `[n, kv_dim]`.
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    /// Softmax probabilities per batch item, `[n_heads, seq, seq]` each.
    probs: Vec<Vec<f32>>,
    /// Concatenated head outputs `[n, q_dim]`.
    attn: Vec<f32>,
    /// Residual stream after attention `[n, dim]`.
    h: Vec<f32>,
    ffn_inv_rms: Vec<f32>,
    /// `post_attention_layernorm(h)` `[n, dim]`.
    hn: Vec<f32>,
    /// MLP gate, up and `silu(gate) ⊙ up`, `[n, hidden_dim]` each.
    gate: Vec<f32>,
    up: Vec<f32>,
    act: Vec<f32>,
}

/// Activations of the whole forward pass.
struct Saved {
    blocks: Vec<BlockSaved>,
    /// Residual stream after the last block `[n, dim]`.
    x_final: Vec<f32>,
    final_inv_rms: Vec<f32>,
    /// `model.norm(x_final)` `[n, dim]`: the classifier's input.
    xf: Vec<f32>,
}

/// One forward/backward pass over a `[batch, seq]` block of tokens.
struct Pass<'a> {
    c: &'a ModelConfig,
    p: &'a Params,
    batch: usize,
    seq: usize,
    n: usize,
    eps: f32,
    rope: RopeTable,
}

impl<'a> Pass<'a> {
    fn new(c: &'a ModelConfig, p: &'a Params, batch: usize, seq: usize) -> Self {
        Pass {
            c,
            p,
            batch,
            seq,
            n: batch * seq,
            eps: c.norm_eps as f32,
            rope: RopeTable::new(c.head_dim, seq, c.rope_theta),
        }
    }

    /// Embedding, blocks, final norm, classifier. Returns the logits `[n, vocab]` and, when
    /// `keep_blocks`, every block's activations for the backward pass.
    fn forward(&self, ids: &[u32], keep_blocks: bool) -> (Vec<f32>, Saved) {
        let (c, n) = (self.c, self.n);
        let mut x = Vec::with_capacity(n * c.dim);
        for &id in ids {
            x.extend_from_slice(self.p.embed_tokens.row(id as usize));
        }
        let mut blocks = Vec::with_capacity(c.n_layers);
        for layer in &self.p.layers {
            let saved = self.block_forward(layer, x);
            x = add(&saved.h, &self.down(layer, &saved.act));
            if keep_blocks {
                blocks.push(saved);
            }
        }
        let mut xf = vec![0.0; n * c.dim];
        let final_inv_rms = rmsnorm_forward(&mut xf, &x, self.p.norm.data(), self.eps);
        let mut logits = vec![0.0; n * c.vocab_size];
        linear_forward(
            &mut logits,
            &xf,
            self.p.classifier().data(),
            n,
            c.dim,
            c.vocab_size,
        );
        let saved = Saved {
            blocks,
            x_final: x,
            final_inv_rms,
            xf,
        };
        (logits, saved)
    }

    fn down(&self, layer: &LayerParams, act: &[f32]) -> Vec<f32> {
        let mut y = vec![0.0; self.n * self.c.dim];
        linear_forward(
            &mut y,
            act,
            Linear::DownProj.get(layer).data(),
            self.n,
            self.c.hidden_dim,
            self.c.dim,
        );
        y
    }

    /// One block up to the MLP activation; the caller adds `down_proj(act)` to `h`.
    fn block_forward(&self, l: &LayerParams, x: Vec<f32>) -> BlockSaved {
        let (c, n, seq) = (self.c, self.n, self.seq);
        let (dim, q_dim, kv_dim, hidden) = (c.dim, c.q_dim(), c.kv_dim(), c.hidden_dim);

        let mut xn = vec![0.0; n * dim];
        let attn_inv_rms = rmsnorm_forward(&mut xn, &x, l.input_layernorm.data(), self.eps);
        let mut q = vec![0.0; n * q_dim];
        let mut k = vec![0.0; n * kv_dim];
        let mut v = vec![0.0; n * kv_dim];
        linear_forward(&mut q, &xn, Linear::QProj.get(l).data(), n, dim, q_dim);
        linear_forward(&mut k, &xn, Linear::KProj.get(l).data(), n, dim, kv_dim);
        linear_forward(&mut v, &xn, Linear::VProj.get(l).data(), n, dim, kv_dim);

        // Qwen3: RMSNorm over each head vector (rows of width head_dim), before RoPE.
        let (mut q_pre, mut k_pre) = (Vec::new(), Vec::new());
        let (mut q_inv_rms, mut k_inv_rms) = (Vec::new(), Vec::new());
        if let (Some(qn), Some(kn)) = (&l.q_norm, &l.k_norm) {
            q_pre = q.clone();
            k_pre = k.clone();
            q_inv_rms = rmsnorm_forward(&mut q, &q_pre, qn.data(), self.eps);
            k_inv_rms = rmsnorm_forward(&mut k, &k_pre, kn.data(), self.eps);
        }
        self.rope.forward(&mut q, q_dim, seq);
        self.rope.forward(&mut k, kv_dim, seq);

        let mut attn = vec![0.0; n * q_dim];
        let probs = (0..self.batch)
            .map(|b| {
                let rows = b * seq..(b + 1) * seq;
                attention_forward(
                    c,
                    seq,
                    &q[rows.start * q_dim..rows.end * q_dim],
                    &k[rows.start * kv_dim..rows.end * kv_dim],
                    &v[rows.start * kv_dim..rows.end * kv_dim],
                    &mut attn[rows.start * q_dim..rows.end * q_dim],
                )
            })
            .collect();
        let mut o = vec![0.0; n * dim];
        linear_forward(&mut o, &attn, Linear::OProj.get(l).data(), n, q_dim, dim);
        let h = add(&x, &o);

        let mut hn = vec![0.0; n * dim];
        let ffn_inv_rms = rmsnorm_forward(&mut hn, &h, l.post_attention_layernorm.data(), self.eps);
        let mut gate = vec![0.0; n * hidden];
        let mut up = vec![0.0; n * hidden];
        linear_forward(
            &mut gate,
            &hn,
            Linear::GateProj.get(l).data(),
            n,
            dim,
            hidden,
        );
        linear_forward(&mut up, &hn, Linear::UpProj.get(l).data(), n, dim, hidden);
        let mut act = vec![0.0; n * hidden];
        swiglu_forward(&mut act, &gate, &up);

        BlockSaved {
            x,
            attn_inv_rms,
            xn,
            q_pre,
            k_pre,
            q_inv_rms,
            k_inv_rms,
            q,
            k,
            v,
            probs,
            attn,
            h,
            ffn_inv_rms,
            hn,
            gate,
            up,
            act,
        }
    }

    /// Gradients of every parameter given `dlogits [n, vocab]`.
    fn backward(&self, ids: &[u32], saved: &Saved, dlogits: &[f32]) -> Params {
        let (c, n) = (self.c, self.n);
        let mut g = Params::zeros(c);

        // Classifier: logits = xf Wᵀ. A tied classifier's gradient lands in the embedding.
        let mut dxf = vec![0.0; n * c.dim];
        linear_backward_input(
            &mut dxf,
            dlogits,
            self.p.classifier().data(),
            n,
            c.dim,
            c.vocab_size,
        );
        let dw_cls = match &mut g.lm_head {
            Some(t) => t.data_mut(),
            None => g.embed_tokens.data_mut(),
        };
        linear_backward_weight(dw_cls, dlogits, &saved.xf, n, c.dim, c.vocab_size);

        let mut dx = vec![0.0; n * c.dim];
        rmsnorm_backward(
            &mut dx,
            g.norm.data_mut(),
            &dxf,
            &saved.x_final,
            self.p.norm.data(),
            &saved.final_inv_rms,
        );

        for (i, s) in saved.blocks.iter().enumerate().rev() {
            dx = self.block_backward(&self.p.layers[i], &mut g.layers[i], s, dx);
        }

        for (r, &id) in ids.iter().enumerate() {
            let row = g.embed_tokens.row_mut(id as usize);
            for (gi, di) in row.iter_mut().zip(&dx[r * c.dim..(r + 1) * c.dim]) {
                *gi += di;
            }
        }
        g
    }

    /// Backward through one block: takes the gradient of its output, adds its weight gradients
    /// to `g`, returns the gradient of its input.
    fn block_backward(
        &self,
        l: &LayerParams,
        g: &mut LayerParams,
        s: &BlockSaved,
        dout: Vec<f32>,
    ) -> Vec<f32> {
        let (c, n, seq) = (self.c, self.n, self.seq);
        let (dim, q_dim, kv_dim, hidden) = (c.dim, c.q_dim(), c.kv_dim(), c.hidden_dim);

        // out = h + down_proj(silu(gate_proj(hn)) ⊙ up_proj(hn)), hn = post_attention_layernorm(h)
        let mut dact = vec![0.0; n * hidden];
        linear_backward_input(
            &mut dact,
            &dout,
            Linear::DownProj.get(l).data(),
            n,
            hidden,
            dim,
        );
        linear_backward_weight(
            Linear::DownProj.get_mut(g).data_mut(),
            &dout,
            &s.act,
            n,
            hidden,
            dim,
        );
        let mut dgate = vec![0.0; n * hidden];
        let mut dup = vec![0.0; n * hidden];
        swiglu_backward(&mut dgate, &mut dup, &dact, &s.gate, &s.up);
        let mut dhn = vec![0.0; n * dim];
        linear_backward_input(
            &mut dhn,
            &dgate,
            Linear::GateProj.get(l).data(),
            n,
            dim,
            hidden,
        );
        linear_backward_input(&mut dhn, &dup, Linear::UpProj.get(l).data(), n, dim, hidden);
        linear_backward_weight(
            Linear::GateProj.get_mut(g).data_mut(),
            &dgate,
            &s.hn,
            n,
            dim,
            hidden,
        );
        linear_backward_weight(
            Linear::UpProj.get_mut(g).data_mut(),
            &dup,
            &s.hn,
            n,
            dim,
            hidden,
        );
        let mut dh = dout;
        rmsnorm_backward(
            &mut dh,
            g.post_attention_layernorm.data_mut(),
            &dhn,
            &s.h,
            l.post_attention_layernorm.data(),
            &s.ffn_inv_rms,
        );

        // h = x + o_proj(attention(rope(q), rope(k), v))
        let mut dattn = vec![0.0; n * q_dim];
        linear_backward_input(&mut dattn, &dh, Linear::OProj.get(l).data(), n, q_dim, dim);
        linear_backward_weight(
            Linear::OProj.get_mut(g).data_mut(),
            &dh,
            &s.attn,
            n,
            q_dim,
            dim,
        );
        let mut dq = vec![0.0; n * q_dim];
        let mut dk = vec![0.0; n * kv_dim];
        let mut dv = vec![0.0; n * kv_dim];
        for b in 0..self.batch {
            let (qr, kr) = (
                b * seq * q_dim..(b + 1) * seq * q_dim,
                b * seq * kv_dim..(b + 1) * seq * kv_dim,
            );
            attention_backward(
                c,
                seq,
                &s.q[qr.clone()],
                &s.k[kr.clone()],
                &s.v[kr.clone()],
                &s.probs[b],
                &dattn[qr.clone()],
                &mut dq[qr],
                &mut dk[kr.clone()],
                &mut dv[kr],
            );
        }
        self.rope.backward(&mut dq, q_dim, seq);
        self.rope.backward(&mut dk, kv_dim, seq);
        if let (Some(qn), Some(kn), Some(gqn), Some(gkn)) =
            (&l.q_norm, &l.k_norm, &mut g.q_norm, &mut g.k_norm)
        {
            let mut dq_pre = vec![0.0; n * q_dim];
            let mut dk_pre = vec![0.0; n * kv_dim];
            rmsnorm_backward(
                &mut dq_pre,
                gqn.data_mut(),
                &dq,
                &s.q_pre,
                qn.data(),
                &s.q_inv_rms,
            );
            rmsnorm_backward(
                &mut dk_pre,
                gkn.data_mut(),
                &dk,
                &s.k_pre,
                kn.data(),
                &s.k_inv_rms,
            );
            dq = dq_pre;
            dk = dk_pre;
        }

        let mut dxn = vec![0.0; n * dim];
        linear_backward_input(&mut dxn, &dq, Linear::QProj.get(l).data(), n, dim, q_dim);
        linear_backward_input(&mut dxn, &dk, Linear::KProj.get(l).data(), n, dim, kv_dim);
        linear_backward_input(&mut dxn, &dv, Linear::VProj.get(l).data(), n, dim, kv_dim);
        linear_backward_weight(
            Linear::QProj.get_mut(g).data_mut(),
            &dq,
            &s.xn,
            n,
            dim,
            q_dim,
        );
        linear_backward_weight(
            Linear::KProj.get_mut(g).data_mut(),
            &dk,
            &s.xn,
            n,
            dim,
            kv_dim,
        );
        linear_backward_weight(
            Linear::VProj.get_mut(g).data_mut(),
            &dv,
            &s.xn,
            n,
            dim,
            kv_dim,
        );
        let mut dx = dh;
        rmsnorm_backward(
            &mut dx,
            g.input_layernorm.data_mut(),
            &dxn,
            &s.x,
            l.input_layernorm.data(),
            &s.attn_inv_rms,
        );
        dx
    }
}

fn add(a: &[f32], b: &[f32]) -> Vec<f32> {
    a.iter().zip(b).map(|(x, y)| x + y).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_batches_and_mismatched_params_are_refused_by_name() {
        let config = ModelConfig::preset("tiny").unwrap();
        let params = Params::zeros(&config);
        let ragged = forward(&config, &params, &[vec![1, 2], vec![3]]).unwrap_err();
        assert!(
            ragged.to_string().contains("row 1 has 1 tokens"),
            "{ragged}"
        );
        let oov = forward(&config, &params, &[vec![1, 256]]).unwrap_err();
        assert!(oov.to_string().contains("token id 256"), "{oov}");
        let short = loss_and_grads(&config, &params, &[vec![1]], None).unwrap_err();
        assert!(short.to_string().contains("at least 2 tokens"), "{short}");
        let other = Params::zeros(&ModelConfig::preset("tiny-gqa").unwrap());
        let err = forward(&config, &other, &[vec![1]]).unwrap_err();
        assert!(err.to_string().contains("k_proj"), "{err}");
    }

    #[test]
    fn logits_depend_only_on_earlier_tokens() {
        let config = ModelConfig::preset("tiny-qwen3").unwrap();
        let params = Params::init(&config, 1).unwrap();
        let a = forward(&config, &params, &[vec![5, 6, 7, 8]]).unwrap();
        let b = forward(&config, &params, &[vec![5, 6, 9, 10]]).unwrap();
        assert_eq!(a.at(0, 1), b.at(0, 1));
        assert_ne!(a.at(0, 2), b.at(0, 2));
    }
}
