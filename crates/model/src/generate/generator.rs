//! The generator: prefill and KV-cache decode through the decode kernels on any [`Device`],
//! with embedding, norms, RoPE and the classifier on the CPU, as in training.
//!
//! Tokens go through the model in chunks as wide as the device's [`DecodePlan`] allows: on the
//! CPU a decode step is a width-1 chunk and a prompt goes through in one chunk exactly its
//! width (up to 256 tokens per chunk); on the ANE every chunk is 32 wide. Each chunk
//! writes its keys and values into the layer's KV cache and attends to the cache and to itself
//! through the CPU-written mask, so prefill and decode are the same code path. Weights are
//! staged once per layer in [`Generator::new`] ([`super::layer_kernels`]); a chunk writes
//! only activations. All buffers are allocated up front.

use std::time::Instant;

use anetrain_device::{Device, Kernel};

use super::kernels::DecodePlan;
use super::layer_kernels::{kernel_error, LayerKernels};
use super::positions::{fill_mask, RotaryTable};
use super::sampler::{Sampler, SamplingOptions};
use crate::config::ModelConfig;
use crate::cpu_ops::elementwise::{add, scale};
use crate::cpu_ops::norm::rmsnorm_forward;
use crate::cpu_ops::{matmul, MatRef};
use crate::error::{ModelError, Result};
use crate::params::Params;

/// What one [`Generator::generate`] call did and how fast.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GenerationStats {
    /// Tokens in the prompt.
    pub prompt_tokens: usize,
    /// Tokens sampled and handed to the callback (an EOS that stops generation is not counted).
    pub generated_tokens: usize,
    /// Wall time of the prefill, in milliseconds.
    pub prefill_ms: f64,
    /// Generated tokens per second after the prefill (sampling included); 0 if none.
    pub decode_tokens_per_s: f64,
}

/// Per-chunk CPU buffers, `[C][W]` channel-major for the chunk's width `W` (sized for the
/// widest), unless noted.
struct Buffers {
    x: Vec<f32>,
    xn: Vec<f32>,
    h: Vec<f32>,
    qkv: Vec<f32>,
    /// Pre-norm q or k for QK-norm.
    qk_pre: Vec<f32>,
    /// The chunk's `n` real columns of k or v, `[KV][n]`.
    kv_cols: Vec<f32>,
    attn: Vec<f32>,
    out: Vec<f32>,
    /// RMS statistics, `[groups][W]`.
    inv: Vec<f32>,
    /// `[W][bucket]`.
    mask: Vec<f32>,
    /// The chunk's last real column `[D]`, before and after the final norm.
    last: Vec<f32>,
    last_normed: Vec<f32>,
    last_inv: Vec<f32>,
    logits: Vec<f32>,
}

/// Runs a language model one chunk at a time against a KV cache (see the module docs).
pub struct Generator {
    config: ModelConfig,
    params: Params,
    device_name: String,
    kernels: LayerKernels,
    max_seq: usize,
    position: usize,
    stop: Vec<u32>,
    rope: RotaryTable,
    buf: Buffers,
}

impl Generator {
    /// Compiles the decode kernels of `config` on `device` for sequences of up to `max_seq`
    /// tokens (at most `config.max_seq_len`), stages `params` into them, and allocates every
    /// buffer.
    pub fn new(
        config: &ModelConfig,
        params: Params,
        device: Box<dyn Device>,
        max_seq: usize,
    ) -> Result<Generator> {
        config.validate()?;
        params.check_matches(config)?;
        if max_seq == 0 || max_seq > config.max_seq_len {
            return Err(ModelError::Options(format!(
                "generation length {max_seq} is outside 1..={} (the model's max_seq_len)",
                config.max_seq_len
            )));
        }
        let kernels = LayerKernels::new(config, &params, device, max_seq)?;
        let plan = kernels.plan();
        let (b, cache_len) = (plan.max_width(), plan.cache_len());
        let c = config;
        let (d, q, kv) = (c.dim, c.q_dim(), c.kv_dim());
        let buf = Buffers {
            x: vec![0.0; d * b],
            xn: vec![0.0; d * b],
            h: vec![0.0; d * b],
            qkv: vec![0.0; (q + 2 * kv) * b],
            qk_pre: vec![0.0; q * b],
            kv_cols: vec![0.0; kv * b],
            attn: vec![0.0; q * b],
            out: vec![0.0; d * b],
            inv: vec![0.0; c.n_heads * b],
            mask: vec![0.0; b * cache_len],
            last: vec![0.0; d],
            last_normed: vec![0.0; d],
            last_inv: vec![0.0; 1],
            logits: vec![0.0; c.vocab_size],
        };
        Ok(Generator {
            config: c.clone(),
            params,
            device_name: kernels.device_name(),
            rope: RotaryTable::new(c.head_dim, cache_len + b, c.rope_theta),
            kernels,
            max_seq,
            position: 0,
            stop: Vec::new(),
            buf,
        })
    }

    /// The chunk widths and cache buckets the kernels were compiled for.
    pub fn plan(&self) -> &DecodePlan {
        self.kernels.plan()
    }

    /// The device the kernels run on, e.g. `cpu (f32)`.
    pub fn device_name(&self) -> &str {
        &self.device_name
    }

    /// The longest sequence (prompt plus generated tokens) this generator holds.
    pub fn max_seq(&self) -> usize {
        self.max_seq
    }

    /// Tokens currently in the cache.
    pub fn position(&self) -> usize {
        self.position
    }

    /// Makes `eos` the token that ends [`Generator::generate`] (none by default).
    pub fn set_eos(&mut self, eos: Option<u32>) {
        self.set_stop_tokens(eos.as_slice());
    }

    /// Makes drawing any of `stop` end [`Generator::generate`] (EOS, a chat template's
    /// end-of-turn, ...).
    pub fn set_stop_tokens(&mut self, stop: &[u32]) {
        self.stop = stop.to_vec();
    }

    /// Forgets the cached sequence. Old cache entries stay in place but the mask hides them.
    pub fn reset(&mut self) {
        self.position = 0;
    }

    /// Appends `tokens` to the cached sequence and returns the next-token logits `[V]` after
    /// the last of them. Runs as few chunks through every layer as the plan's widths allow
    /// ([`DecodePlan::chunk_width`]).
    pub fn feed(&mut self, tokens: &[u32]) -> Result<&[f32]> {
        if tokens.is_empty() {
            return Err(ModelError::Input("feed needs at least one token".into()));
        }
        if self.position + tokens.len() > self.max_seq {
            return Err(ModelError::Input(format!(
                "{} cached plus {} new tokens exceed the generator's max_seq {}; use a shorter prompt or a larger max_seq",
                self.position,
                tokens.len(),
                self.max_seq
            )));
        }
        let v = self.config.vocab_size;
        if let Some(&bad) = tokens.iter().find(|&&t| t as usize >= v) {
            return Err(ModelError::Input(format!(
                "token id {bad} is outside the model's vocabulary of {v}; use the model's tokenizer"
            )));
        }
        let mut rest = tokens;
        while !rest.is_empty() {
            let width = self.kernels.plan().chunk_width(rest.len());
            let (chunk, tail) = rest.split_at(width.min(rest.len()));
            self.run_chunk(chunk, width)?;
            self.position += chunk.len();
            rest = tail;
        }
        Ok(&self.buf.logits)
    }

    /// Prefills `prompt_ids` (the cache is reset first), then samples up to `max_new_tokens`
    /// tokens under `options`, handing each to `on_token` as soon as it is chosen. Stops early
    /// when a stop token ([`Generator::set_stop_tokens`]) is drawn (it is not handed over), when
    /// `on_token` returns false, or when the sequence reaches `max_seq`.
    pub fn generate(
        &mut self,
        prompt_ids: &[u32],
        max_new_tokens: usize,
        options: SamplingOptions,
        mut on_token: impl FnMut(u32) -> bool,
    ) -> Result<GenerationStats> {
        let mut sampler = Sampler::new(options)?;
        if prompt_ids.is_empty() {
            return Err(ModelError::Input(
                "the prompt is empty; give at least one token (e.g. BOS)".into(),
            ));
        }
        self.reset();
        let started = Instant::now();
        self.feed(prompt_ids)?;
        let prefill_ms = started.elapsed().as_secs_f64() * 1e3;
        let decode_started = Instant::now();
        let mut generated = 0;
        while generated < max_new_tokens {
            let token = sampler.sample(&self.buf.logits)?;
            if self.stop.contains(&token) {
                break;
            }
            generated += 1;
            if !on_token(token) || self.position == self.max_seq || generated == max_new_tokens {
                break;
            }
            self.feed(&[token])?;
        }
        let secs = decode_started.elapsed().as_secs_f64();
        Ok(GenerationStats {
            prompt_tokens: prompt_ids.len(),
            generated_tokens: generated,
            prefill_ms,
            decode_tokens_per_s: if generated > 0 && secs > 0.0 {
                generated as f64 / secs
            } else {
                0.0
            },
        })
    }

    /// One chunk of `n ≤ width` tokens at `self.position` through the width-`width` kernels:
    /// every layer, then the logits of the chunk's last token into `buf.logits`.
    fn run_chunk(&mut self, tokens: &[u32], width: usize) -> Result<()> {
        let Generator {
            config: c,
            params,
            kernels,
            position,
            rope,
            buf,
            ..
        } = self;
        let (b, n, start) = (width, tokens.len(), *position);
        let (d, q, kv) = (c.dim, c.q_dim(), c.kv_dim());
        let layout = kernels.plan().layout;
        let bucket = kernels.plan().bucket(start + n);
        let eps = c.norm_eps as f32;
        let table = params.embed_tokens.data();
        let x = &mut buf.x[..d * b];
        x.fill(0.0);
        for (j, &tok) in tokens.iter().enumerate() {
            let row = &table[tok as usize * d..][..d];
            for (ch, &val) in row.iter().enumerate() {
                x[ch * b + j] = val;
            }
        }
        let mask = &mut buf.mask[..b * bucket];
        fill_mask(mask, bucket, start, n);
        let attn_scale = 1.0 / (c.head_dim as f32).sqrt();
        let (xs, xn, hs) = (
            &mut buf.x[..d * b],
            &mut buf.xn[..d * b],
            &mut buf.h[..d * b],
        );
        let (qkv, attn, out) = (
            &mut buf.qkv[..(q + 2 * kv) * b],
            &mut buf.attn[..q * b],
            &mut buf.out[..d * b],
        );
        for (l, p) in params.layers.iter().enumerate() {
            rmsnorm_forward(xn, &mut buf.inv[..b], xs, p.input_layernorm.data(), b, eps);
            run(
                kernels.matmuls(b, l, params)?.qkv.as_mut(),
                "decode_qkv",
                b,
                xn,
                qkv,
            )?;
            let (q_rows, rest) = qkv.split_at_mut(q * b);
            let (k_rows, v_rows) = rest.split_at_mut(kv * b);
            if let (Some(qn), Some(kn)) = (&p.q_norm, &p.k_norm) {
                let heads = c.n_heads;
                let pre = &mut buf.qk_pre[..q * b];
                pre.copy_from_slice(q_rows);
                rmsnorm_forward(q_rows, &mut buf.inv[..heads * b], pre, qn.data(), b, eps);
                let kv_heads = c.n_kv_heads;
                let pre = &mut buf.qk_pre[..kv * b];
                pre.copy_from_slice(k_rows);
                rmsnorm_forward(k_rows, &mut buf.inv[..kv_heads * b], pre, kn.data(), b, eps);
            }
            rope.rotate(q_rows, b, start);
            rope.rotate(k_rows, b, start);
            scale(q_rows, attn_scale);

            kernels.write_attention(l, 0..q, 0..b, q_rows)?;
            for (rows, first) in [(&*k_rows, layout.k), (&*v_rows, layout.v)] {
                columns(&mut buf.kv_cols, rows, b, n);
                kernels.write_attention(
                    l,
                    first..first + kv,
                    start..start + n,
                    &buf.kv_cols[..kv * n],
                )?;
            }
            kernels.write_attention(l, layout.mask..layout.mask + b, 0..bucket, mask)?;
            kernels.run_attention(l, b, bucket, attn)?;

            let mm = kernels.matmuls(b, l, params)?;
            run(mm.wo.as_mut(), "decode_wo", b, attn, out)?;
            add(hs, xs, out);
            rmsnorm_forward(
                xn,
                &mut buf.inv[..b],
                hs,
                p.post_attention_layernorm.data(),
                b,
                eps,
            );
            run(mm.ffn.as_mut(), "decode_ffn", b, xn, out)?;
            add(xs, hs, out);
        }
        for (ch, v) in buf.last.iter_mut().enumerate() {
            *v = xs[ch * b + n - 1];
        }
        rmsnorm_forward(
            &mut buf.last_normed,
            &mut buf.last_inv,
            &buf.last,
            params.norm.data(),
            1,
            eps,
        );
        // logits [V][1] = E [V][D] · last [D][1]
        let e = MatRef::rows(params.classifier().data(), c.vocab_size, d)?;
        let x = MatRef::rows(&buf.last_normed, d, 1)?;
        matmul(&mut buf.logits, false, e, x)
    }
}

/// Writes activation `a [ic][w]` into columns `[0, w)` of a packed kernel, runs it and reads
/// the first `out.len() / w` output channels (the rest is padding).
fn run(kernel: &mut dyn Kernel, name: &str, w: usize, a: &[f32], out: &mut [f32]) -> Result<()> {
    let err = |e| kernel_error(name, e);
    kernel
        .write_input_region(0, 0..a.len() / w, 0..w, a)
        .map_err(err)?;
    kernel.run().map_err(err)?;
    kernel
        .read_output_channels(0, 0..out.len() / w, out)
        .map_err(err)
}

/// Copies the first `n` columns of `rows [C][B]` into `dst` as `[C][n]`.
fn columns(dst: &mut [f32], rows: &[f32], b: usize, n: usize) {
    for (d, r) in dst.chunks_exact_mut(n).zip(rows.chunks_exact(b)) {
        d.copy_from_slice(&r[..n]);
    }
}
