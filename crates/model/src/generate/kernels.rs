//! The decode kernels: MIL programs that advance a sequence by a chunk of `width` tokens
//! against a KV cache. One builder serves every device; the [`DecodePlan`] says which widths
//! and cache lengths a device gets.
//!
//! The ANE wants widths that are multiples of 32 and buffers of at least 48 KiB
//! (ane-reference §2.4, §5 #11–#12), so there a decode step uses column 0 of a 32-wide chunk
//! (the other 31 columns cost nothing below the dispatch floor) and every kernel attends over
//! the whole cache. The CPU has no such rule: a decode step runs width 1, a prefill chunk
//! runs exactly as wide as the prompt (up to [`MAX_PREFILL_WIDTH`]; compiling a width is
//! cheap there, padding columns are not), and attention reads only the cache bucket that
//! covers the filled positions.
//!
//! Notation: D dim, Q = heads·head_dim, KV = kv_heads·head_dim, H hidden, W the chunk width,
//! R the widest chunk of the plan, T the whole cache, A ≤ T the positions a kernel attends
//! over. Activations are channel-major `[C][W]`.
//!
//! | kernel | input `[1, C, 1, ·]` | output |
//! |---|---|---|
//! | `decode_qkv` | C = D: `a [D][W]`, then `[Wq; Wk; Wv]ᵀ` | `[1, Q+2KV, 1, W]` q, k, v |
//! | `decode_attention` | C = Q+2KV+R, T columns: `q [Q][W]` (pre-scaled), `K [KV][T]`, `V [KV][T]`, mask `[R][T]` | `[1, Q, 1, W]` |
//! | `decode_wo` | C = Q: `attn [Q][W]`, then `Woᵀ` | `[1, D, 1, W]` |
//! | `decode_ffn` | C = D: `hn [D][W]`, then `W1ᵀ`, `W3ᵀ`, `W2` | `[1, D, 1, W]`, `W2 (silu(W1 hn) ⊙ W3 hn)` |
//!
//! The K and V channels of `decode_attention`'s input **are** the KV cache. Every attention
//! kernel of a plan has the same input shape whatever its width and bucket, so on a device
//! that reads host memory in place all of a layer's attention kernels read one buffer; on the
//! ANE the plan has one attention kernel per layer and its input holds the cache.

use anetrain_device::SurfacePolicy;
use anetrain_mil::{Builder, Bundle, DType, Var};

use crate::config::ModelConfig;
use crate::error::{ModelError, Result};
use crate::kernels::{dynamic_matmul_into, swiglu_into, KernelForms, INPUT, OUTPUT, SWAP_LAST};

/// Bytes of an fp16 element.
const FP16_BYTES: usize = 2;
/// The widest prefill chunk on a device without width rules: wider chunks gain little GEMM
/// efficiency and the attention scores `[heads][R][T]` grow with R.
pub const MAX_PREFILL_WIDTH: usize = 256;
/// The shortest cache bucket on a device without width rules.
const MIN_CACHE_BUCKET: usize = 32;

/// `n` rounded up to a multiple of `m`.
fn round_up(n: usize, m: usize) -> usize {
    n.div_ceil(m.max(1)) * m.max(1)
}

/// The widths and cache lengths of one device's decode kernels.
#[derive(Clone, Debug, PartialEq)]
pub struct DecodePlan {
    /// Tokens a decode step runs through the kernels (one column of them is real).
    pub decode_width: usize,
    /// The widths prefill chunks run.
    pub prefill: PrefillWidths,
    /// Positions an attention kernel may attend over, ascending; the last is the whole cache.
    pub cache_buckets: Vec<usize>,
    /// Channels of every attention kernel's input.
    pub layout: AttentionLayout,
    /// The device's port rules, `None` for a device that runs any shape.
    policy: Option<SurfacePolicy>,
}

impl DecodePlan {
    /// The plan for sequences of up to `max_seq` tokens on a device with port rules `policy`
    /// ([`anetrain_device::Device::surface_policy`]). With rules: one width (the smallest they
    /// allow) and one cache length, so one kernel of each kind per layer. Without: width 1 to
    /// decode, prefill chunks as wide as the prompt up to [`MAX_PREFILL_WIDTH`], power-of-two
    /// cache buckets.
    pub fn new(
        config: &ModelConfig,
        max_seq: usize,
        policy: Option<SurfacePolicy>,
    ) -> Result<DecodePlan> {
        config.validate()?;
        if max_seq == 0 {
            return Err(ModelError::Config(
                "the decode cache must hold at least one token; give a positive length".into(),
            ));
        }
        let Some(p) = policy else {
            // A chunk never outgrows the cache (q's columns share the cache's).
            let widest = max_seq.min(MAX_PREFILL_WIDTH);
            let mut cache_buckets: Vec<usize> = (0..)
                .map(|i| MIN_CACHE_BUCKET << i)
                .take_while(|&b| b < max_seq)
                .collect();
            cache_buckets.push(max_seq);
            return Ok(DecodePlan {
                decode_width: 1,
                prefill: PrefillWidths::UpTo(widest),
                cache_buckets,
                layout: AttentionLayout::new(config, widest),
                policy,
            });
        };
        let width = round_up(p.min_width.max(1), p.width_multiple);
        let layout = AttentionLayout::new(config, width);
        let plan = DecodePlan {
            decode_width: width,
            prefill: PrefillWidths::Fixed(width),
            cache_buckets: Vec::new(),
            layout,
            policy,
        };
        let cache = plan.port_width(layout.channels, max_seq);
        Ok(DecodePlan {
            cache_buckets: vec![cache],
            ..plan
        })
    }

    /// The whole cache: the columns of every attention kernel's input.
    pub fn cache_len(&self) -> usize {
        self.cache_buckets.last().copied().unwrap_or(0)
    }

    /// The widest chunk the plan runs: what per-chunk buffers are sized for.
    pub fn max_width(&self) -> usize {
        self.prefill.widest().max(self.decode_width)
    }

    /// The widths compiled up front, ascending: the decode width and a fixed prefill width.
    /// An exact-fit prefill width is compiled when a prompt needs it.
    pub fn fixed_widths(&self) -> Vec<usize> {
        match self.prefill {
            PrefillWidths::Fixed(w) if w != self.decode_width => {
                let mut all = vec![self.decode_width, w];
                all.sort_unstable();
                all
            }
            _ => vec![self.decode_width],
        }
    }

    /// The width of the next chunk when `remaining` tokens are left: all of them in one call
    /// where the plan allows, else its widest.
    pub fn chunk_width(&self, remaining: usize) -> usize {
        match self.prefill {
            _ if remaining <= 1 => self.decode_width,
            PrefillWidths::Fixed(w) => w,
            PrefillWidths::UpTo(widest) => remaining.min(widest),
        }
    }

    /// The shortest cache bucket holding `filled` positions.
    pub fn bucket(&self, filled: usize) -> usize {
        self.cache_buckets
            .iter()
            .copied()
            .find(|&b| b >= filled)
            .unwrap_or(self.cache_len())
    }

    /// The input width for `channels` channels of which `used` columns carry data: `used`,
    /// or under port rules widened to their width multiple and minimum buffer size.
    pub fn port_width(&self, channels: usize, used: usize) -> usize {
        match self.policy {
            None => used,
            Some(p) => {
                let min_width = p.min_bytes.div_ceil(channels.max(1) * FP16_BYTES);
                round_up(used.max(min_width).max(p.min_width), p.width_multiple)
            }
        }
    }
}

/// The widths a plan's prefill chunks run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PrefillWidths {
    /// One width under port rules: a prompt goes through in chunks of it, the last padded.
    Fixed(usize),
    /// Any width up to this one: a prompt goes through in chunks as wide as what is left, so
    /// no column is padding.
    UpTo(usize),
}

impl PrefillWidths {
    /// The widest prefill chunk.
    pub fn widest(self) -> usize {
        match self {
            PrefillWidths::Fixed(w) | PrefillWidths::UpTo(w) => w,
        }
    }
}

/// The four decode kernels of one chunk width and cache bucket.
#[derive(Clone, Debug, PartialEq)]
pub struct DecodeKernels {
    /// `y = [Wq; Wk; Wv] a`.
    pub qkv: Bundle,
    /// Attention of the chunk's queries over the bucket's cache positions.
    pub attention: Bundle,
    /// `y = Wo attn`.
    pub wo: Bundle,
    /// The SwiGLU feed-forward `W2 (silu(W1 hn) ⊙ W3 hn)`.
    pub ffn: Bundle,
}

impl DecodeKernels {
    /// Builds every decode kernel of `config` under `plan` for chunks of `width` tokens
    /// attending over `attended` cache positions.
    pub fn build(
        config: &ModelConfig,
        plan: &DecodePlan,
        width: usize,
        attended: usize,
        forms: KernelForms,
    ) -> Result<DecodeKernels> {
        let (d, q, kv, h) = (
            config.dim,
            config.q_dim(),
            config.kv_dim(),
            config.hidden_dim,
        );
        Ok(DecodeKernels {
            qkv: decode_matmul(plan, d, q + 2 * kv, width, forms)?,
            attention: decode_attention(config, plan, width, attended)?,
            wo: decode_matmul(plan, q, d, width, forms)?,
            ffn: decode_ffn(plan, d, h, width, forms)?,
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

/// Every kernel `plan` compiles, named for `mil dump`: `decode_qkv_w{W}`, `decode_wo_w{W}`,
/// `decode_ffn_w{W}` and `decode_attention_w{W}_a{A}` for the decode width over every cache
/// bucket, and for the widest prefill chunk over the bucket a prompt of its width fills (an
/// exact-fit plan compiles narrower chunks the same way, with `W` the prompt's length).
pub fn plan_kernels(
    config: &ModelConfig,
    plan: &DecodePlan,
    forms: KernelForms,
) -> Result<Vec<(String, Bundle)>> {
    let mut widths = vec![plan.decode_width, plan.prefill.widest()];
    widths.dedup();
    let mut list = Vec::new();
    for w in widths {
        for (name, bundle) in decode_matmuls(config, plan, w, forms)? {
            list.push((format!("{name}_w{w}"), bundle));
        }
        let buckets = if w == plan.decode_width {
            plan.cache_buckets.clone()
        } else {
            vec![plan.bucket(w)]
        };
        for a in buckets {
            list.push((
                format!("decode_attention_w{w}_a{a}"),
                decode_attention(config, plan, w, a)?,
            ));
        }
    }
    Ok(list)
}

/// The weight-bearing kernels of one layer at chunk width `width`, named: `decode_qkv`
/// (`x → [q; k; v]`), `decode_wo` (attention → `x`) and `decode_ffn`.
pub fn decode_matmuls(
    config: &ModelConfig,
    plan: &DecodePlan,
    width: usize,
    forms: KernelForms,
) -> Result<[(&'static str, Bundle); 3]> {
    let (d, q, kv, h) = (
        config.dim,
        config.q_dim(),
        config.kv_dim(),
        config.hidden_dim,
    );
    Ok([
        (
            "decode_qkv",
            decode_matmul(plan, d, q + 2 * kv, width, forms)?,
        ),
        ("decode_wo", decode_matmul(plan, q, d, width, forms)?),
        ("decode_ffn", decode_ffn(plan, d, h, width, forms)?),
    ])
}

/// `decode_qkv` / `decode_wo`: input `[1, ic, 1, ·  W+oc]` (activation, then the staged
/// `M [ic][oc]`), output `[1, oc, 1, W]`, `y = Mᵀ a`.
pub fn decode_matmul(
    plan: &DecodePlan,
    ic: usize,
    oc: usize,
    width: usize,
    forms: KernelForms,
) -> Result<Bundle> {
    let mut b = Builder::new();
    let x = b.input(
        INPUT,
        DType::Fp16,
        [1, ic, 1, plan.port_width(ic, width + oc)],
    )?;
    let y = dynamic_matmul_into(&mut b, x, ic, oc, width, forms.matmul)?;
    b.output(y, OUTPUT)?;
    b.finish().map_err(ModelError::from)
}

/// `decode_ffn`: input `[1, D, 1, ·  W+3H]` holding `hn [D][W]`, `W1ᵀ [D][H]`, `W3ᵀ [D][H]`
/// and `W2 [D][H]` (not transposed: `W2 act` reads it as it is), output `[1, D, 1, W]`.
pub fn decode_ffn(
    plan: &DecodePlan,
    d: usize,
    h: usize,
    width: usize,
    forms: KernelForms,
) -> Result<Bundle> {
    let mut b = Builder::new();
    let x = b.input(
        INPUT,
        DType::Fp16,
        [1, d, 1, plan.port_width(d, width + 3 * h)],
    )?;
    let h13 = dynamic_matmul_into(&mut b, x, d, 2 * h, width, forms.matmul)?;
    let act = swiglu_into(&mut b, h13, h, width)?;
    let w2 = b.slice(x, &[0, 0, 0, width + 2 * h], &[1, d, 1, h])?;
    let w2 = b.reshape(w2, &[1, 1, d, h])?;
    let act = b.reshape(act, &[1, 1, h, width])?;
    // [D][H] · [H][W]: already channel-major.
    let y = b.matmul(w2, act)?;
    let y = b.reshape(y, &[1, d, 1, width])?;
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
    /// Total input channels (= Q + 2KV + mask rows).
    pub channels: usize,
}

impl AttentionLayout {
    /// The layout for `config` with `rows` mask rows (the widest chunk).
    pub fn new(config: &ModelConfig, rows: usize) -> AttentionLayout {
        let (q, kv) = (config.q_dim(), config.kv_dim());
        AttentionLayout {
            k: q,
            v: q + kv,
            mask: q + 2 * kv,
            channels: q + 2 * kv + rows,
        }
    }
}

/// `decode_attention`: input `[1, Q+2KV+R, 1, T]` (see [`AttentionLayout`]): q `[Q][W]` in
/// columns `[0, W)` of the first Q channels, normed, rotated and pre-scaled by `head_dim^-½`
/// (the CPU does it in f32, as for training); the cached keys `[KV][T]` (normed, rotated) and
/// values `[KV][T]`; an additive mask whose row `j < W` is 0 at the cache positions query
/// column `j` may see and `MASK_VALUE` elsewhere (unused slots and the future). Only the first
/// `A` positions are read. The CPU writes the mask because it changes every step; an in-kernel
/// constant could not. Output `[1, Q, 1, W]`: `softmax(qᵀK + mask) V` per head, heads in
/// order, query head `h` reading kv head `h / (heads / kv_heads)`.
pub fn decode_attention(
    config: &ModelConfig,
    plan: &DecodePlan,
    width: usize,
    attended: usize,
) -> Result<Bundle> {
    let (nh, hd) = (config.n_heads, config.head_dim);
    let layout = plan.layout;
    let (t, a) = (plan.cache_len(), attended);
    if a == 0 || a > t || width > layout.channels - layout.mask {
        return Err(ModelError::Config(format!(
            "a decode attention kernel of width {width} over {a} positions does not fit the \
             plan's cache of {t} positions and {} mask rows; build it from the plan's widths \
             and buckets",
            layout.channels - layout.mask
        )));
    }
    let mut b = Builder::new();
    let x = b.input(INPUT, DType::Fp16, [1, layout.channels, 1, t])?;
    let q = b.slice(x, &[0, 0, 0, 0], &[1, nh * hd, 1, width])?;
    let q = b.reshape(q, &[1, nh, hd, width])?;
    let k = cache_heads(&mut b, x, layout.k, config, a)?;
    let v = cache_heads(&mut b, x, layout.v, config, a)?;
    let mask = b.slice(x, &[0, layout.mask, 0, 0], &[1, width, 1, a])?;
    let mask = b.reshape(mask, &[1, 1, width, a])?;
    // scores[h, j, t2] = Σ_i q[h, i, j] k[h, i, t2]
    let q = b.transpose(q, &SWAP_LAST)?;
    let scores = b.matmul(q, k)?;
    let masked = b.add(scores, mask)?;
    let p = b.softmax(masked, -1)?;
    // out[h, i, j] = Σ_t2 v[h, i, t2] p[h, j, t2]
    // p is [W][A], not square, so it is transposed explicitly rather than by a matmul flag.
    let p = b.transpose(p, &SWAP_LAST)?;
    let out = b.matmul(v, p)?;
    let y = b.reshape(out, &[1, nh * hd, 1, width])?;
    b.output(y, OUTPUT)?;
    b.finish().map_err(ModelError::from)
}

/// The first `a` positions of the cache block starting at channel `begin`, `[KV][a]`, as
/// `[1, heads, head_dim, a]` with each kv head repeated `heads / kv_heads` times in place
/// (Hugging Face's `repeat_kv`).
fn cache_heads(
    b: &mut Builder,
    x: Var,
    begin: usize,
    config: &ModelConfig,
    a: usize,
) -> Result<Var> {
    let (nh, kvh, hd) = (config.n_heads, config.n_kv_heads, config.head_dim);
    let block = b.slice(x, &[0, begin, 0, 0], &[1, kvh * hd, 1, a])?;
    let ratio = nh / kvh;
    if ratio == 1 {
        return b.reshape(block, &[1, nh, hd, a]).map_err(ModelError::from);
    }
    let flat = b.reshape(block, &[1, kvh, 1, hd * a])?;
    let tiled = b.concat(&vec![flat; ratio], 2)?;
    b.reshape(tiled, &[1, nh, hd, a]).map_err(ModelError::from)
}
