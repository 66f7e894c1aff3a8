//! The decode kernels: MIL programs that advance a sequence by a chunk of up to [`BUCKET`]
//! tokens against a KV cache, compiled once per config and cache length.
//!
//! Every kernel works on a fixed-width bucket of [`BUCKET`] spatial columns, because the ANE
//! wants widths that are multiples of 32 and buffers of at least 48 KiB (ane-reference §2.4,
//! §5 #11–#12). Prefill fills all columns of each chunk; a decode step uses column 0 only and
//! wastes the other 31 (the zeros are multiplied like real tokens, so a decode step costs as
//! much device work as a 32-token chunk; on the ANE that work is far below the dispatch floor).
//! Inputs still smaller than 48 KiB are widened with unused columns ([`port_width`]); outputs
//! are declared at their real size, because the device allocates every surface at 48 KiB or
//! more anyway (no peer pads an output with a concatenated constant, so neither does this).
//!
//! Notation: D dim, Q = heads·head_dim, KV = kv_heads·head_dim, H hidden, B = [`BUCKET`],
//! T the cache length (a multiple of 32). Activations are channel-major `[C][B]`.
//!
//! | kernel | input `[1, C, 1, W]` | output |
//! |---|---|---|
//! | `decode_qkv` | C = D: `a [D][B]`, then `[Wq; Wk; Wv]ᵀ` | `[1, Q+2KV, 1, B]` q, k, v |
//! | `decode_attention` | C = Q+2KV+B: `q [Q][B]` (pre-scaled), `K [KV][T]`, `V [KV][T]`, mask `[B][T]` | `[1, Q, 1, B]` |
//! | `decode_wo` | C = Q: `attn [Q][B]`, then `Woᵀ` | `[1, D, 1, B]` |
//! | `decode_ffn` | C = D: `hn [D][B]`, then `W1ᵀ`, `W3ᵀ`, `W2` | `[1, D, 1, B]`, `W2 (silu(W1 hn) ⊙ W3 hn)` |
//!
//! The K and V channels of `decode_attention`'s input **are** the KV cache: each layer has its
//! own copy of the kernel (a fork), new keys and values are written into their columns once,
//! and nothing is copied per step.

use anetrain_mil::{Builder, Bundle, DType, Var};

use crate::config::ModelConfig;
use crate::error::{ModelError, Result};
use crate::kernels::{dynamic_matmul_into, swiglu_into, KernelForms, INPUT, OUTPUT, SWAP_LAST};

/// Spatial columns of every decode kernel: one chunk of up to this many tokens per run.
pub const BUCKET: usize = 32;

/// The smallest input or output buffer the ANE is known to evaluate (ane-reference §2.4).
const MIN_PORT_BYTES: usize = 49_152;
/// Bytes of an fp16 element.
const FP16_BYTES: usize = 2;

/// `n` rounded up to a multiple of 32, the ANE's width quantum.
pub fn round_up_32(n: usize) -> usize {
    n.div_ceil(32) * 32
}

/// The input width for `channels` channels of which `used` columns carry data: a multiple of
/// 32, wide enough that the buffer reaches the 48 KiB minimum.
pub fn port_width(channels: usize, used: usize) -> usize {
    let min_width = MIN_PORT_BYTES.div_ceil(channels.max(1) * FP16_BYTES);
    round_up_32(used.max(min_width))
}

/// The four decode kernels of one config.
#[derive(Clone, Debug, PartialEq)]
pub struct DecodeKernels {
    /// `y = [Wq; Wk; Wv] a`.
    pub qkv: Bundle,
    /// Attention of the bucket's queries over the cache.
    pub attention: Bundle,
    /// `y = Wo attn`.
    pub wo: Bundle,
    /// The SwiGLU feed-forward `W2 (silu(W1 hn) ⊙ W3 hn)`.
    pub ffn: Bundle,
}

impl DecodeKernels {
    /// Builds every decode kernel of `config` for a cache of `cache_len` positions (a
    /// multiple of 32, at least 32).
    pub fn build(
        config: &ModelConfig,
        cache_len: usize,
        forms: KernelForms,
    ) -> Result<DecodeKernels> {
        config.validate()?;
        if cache_len < 32 || !cache_len.is_multiple_of(32) {
            return Err(ModelError::Config(format!(
                "the decode cache length {cache_len} must be a positive multiple of 32; round it up"
            )));
        }
        let (d, q, kv, h) = (
            config.dim,
            config.q_dim(),
            config.kv_dim(),
            config.hidden_dim,
        );
        Ok(DecodeKernels {
            qkv: decode_matmul(d, q + 2 * kv, forms)?,
            attention: decode_attention(config, cache_len)?,
            wo: decode_matmul(q, d, forms)?,
            ffn: decode_ffn(d, h, forms)?,
        })
    }

    /// `(name, bundle)` for each kernel, for checks and diagnostics.
    pub fn named(&self) -> [(&'static str, &Bundle); 4] {
        [
            ("decode_qkv", &self.qkv),
            ("decode_attention", &self.attention),
            ("decode_wo", &self.wo),
            ("decode_ffn", &self.ffn),
        ]
    }
}

/// `decode_qkv` / `decode_wo`: input `[1, ic, 1, W  B+oc]` (activation, then the staged
/// `M [ic][oc]`), output `[1, oc, 1, B]`, `y = Mᵀ a`.
pub fn decode_matmul(ic: usize, oc: usize, forms: KernelForms) -> Result<Bundle> {
    let mut b = Builder::new();
    let x = b.input(INPUT, DType::Fp16, [1, ic, 1, port_width(ic, BUCKET + oc)])?;
    let y = dynamic_matmul_into(&mut b, x, ic, oc, BUCKET, forms.matmul)?;
    b.output(y, OUTPUT)?;
    b.finish().map_err(ModelError::from)
}

/// `decode_ffn`: input `[1, D, 1, W  B+3H]` holding `hn [D][B]`, `W1ᵀ [D][H]`, `W3ᵀ [D][H]`
/// and `W2 [D][H]` (not transposed: `W2 act` reads it as it is), output `[1, D, 1, B]`.
pub fn decode_ffn(d: usize, h: usize, forms: KernelForms) -> Result<Bundle> {
    let mut b = Builder::new();
    let x = b.input(INPUT, DType::Fp16, [1, d, 1, port_width(d, BUCKET + 3 * h)])?;
    let h13 = dynamic_matmul_into(&mut b, x, d, 2 * h, BUCKET, forms.matmul)?;
    let act = swiglu_into(&mut b, h13, h, BUCKET)?;
    let w2 = b.slice(x, &[0, 0, 0, BUCKET + 2 * h], &[1, d, 1, h])?;
    let w2 = b.reshape(w2, &[1, 1, d, h])?;
    let act = b.reshape(act, &[1, 1, h, BUCKET])?;
    // [D][H] · [H][B]: already channel-major.
    let y = b.matmul(w2, act)?;
    let y = b.reshape(y, &[1, d, 1, BUCKET])?;
    b.output(y, OUTPUT)?;
    b.finish().map_err(ModelError::from)
}

/// Channels of `decode_attention`'s input: where q, the K and V caches and the mask start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AttentionLayout {
    /// First K channel (= Q).
    pub k: usize,
    /// First V channel (= Q + KV).
    pub v: usize,
    /// First mask channel (= Q + 2KV); mask row `j` is channel `mask + j`.
    pub mask: usize,
    /// Total input channels (= Q + 2KV + B).
    pub channels: usize,
}

impl AttentionLayout {
    /// The layout for `config`.
    pub fn new(config: &ModelConfig) -> AttentionLayout {
        let (q, kv) = (config.q_dim(), config.kv_dim());
        AttentionLayout {
            k: q,
            v: q + kv,
            mask: q + 2 * kv,
            channels: q + 2 * kv + BUCKET,
        }
    }
}

/// `decode_attention`: input `[1, Q+2KV+B, 1, T]` (see [`AttentionLayout`]): q `[Q][B]` in
/// columns `[0, B)` of the first Q channels, normed, rotated and pre-scaled by `head_dim^-½`
/// (the CPU does it in f32, as for training); the cached keys `[KV][T]` (normed, rotated) and
/// values `[KV][T]`; an additive mask `[B][T]` whose row `j` is 0 at the cache positions query
/// column `j` may see and `MASK_VALUE` elsewhere (unused slots and the future). The CPU writes
/// the mask because it changes every step; an in-kernel constant could not. Output
/// `[1, Q, 1, B]`: `softmax(qᵀK + mask) V` per head, heads in order, query head `h` reading kv
/// head `h / (heads / kv_heads)`.
pub fn decode_attention(config: &ModelConfig, t: usize) -> Result<Bundle> {
    let (nh, hd) = (config.n_heads, config.head_dim);
    let layout = AttentionLayout::new(config);
    let mut b = Builder::new();
    let x = b.input(INPUT, DType::Fp16, [1, layout.channels, 1, t])?;
    let q = b.slice(x, &[0, 0, 0, 0], &[1, nh * hd, 1, BUCKET])?;
    let q = b.reshape(q, &[1, nh, hd, BUCKET])?;
    let k = cache_heads(&mut b, x, layout.k, config, t)?;
    let v = cache_heads(&mut b, x, layout.v, config, t)?;
    let mask = b.slice(x, &[0, layout.mask, 0, 0], &[1, BUCKET, 1, t])?;
    let mask = b.reshape(mask, &[1, 1, BUCKET, t])?;
    // scores[h, j, t2] = Σ_i q[h, i, j] k[h, i, t2]
    let q = b.transpose(q, &SWAP_LAST)?;
    let scores = b.matmul(q, k)?;
    let masked = b.add(scores, mask)?;
    let p = b.softmax(masked, -1)?;
    // out[h, i, j] = Σ_t2 v[h, i, t2] p[h, j, t2]
    // p is [B][T], not square, so it is transposed explicitly rather than by a matmul flag.
    let p = b.transpose(p, &SWAP_LAST)?;
    let out = b.matmul(v, p)?;
    let y = b.reshape(out, &[1, nh * hd, 1, BUCKET])?;
    b.output(y, OUTPUT)?;
    b.finish().map_err(ModelError::from)
}

/// The cache block starting at channel `begin`, `[KV][T]`, as `[1, heads, head_dim, T]` with
/// each kv head repeated `heads / kv_heads` times in place (Hugging Face's `repeat_kv`).
fn cache_heads(
    b: &mut Builder,
    x: Var,
    begin: usize,
    config: &ModelConfig,
    t: usize,
) -> Result<Var> {
    let (nh, kvh, hd) = (config.n_heads, config.n_kv_heads, config.head_dim);
    let block = b.slice(x, &[0, begin, 0, 0], &[1, kvh * hd, 1, t])?;
    let ratio = nh / kvh;
    if ratio == 1 {
        return b.reshape(block, &[1, nh, hd, t]).map_err(ModelError::from);
    }
    let flat = b.reshape(block, &[1, kvh, 1, hd * t])?;
    let tiled = b.concat(&vec![flat; ratio], 2)?;
    b.reshape(tiled, &[1, nh, hd, t]).map_err(ModelError::from)
}
