//! llama2.c checkpoints (`stories15M.bin` and friends): a 7×i32 header followed by f32 arrays
//! stacked over layers. llama2.c rotates interleaved pairs `(2i, 2i+1)` in RoPE while Hugging
//! Face rotates halves `(i, i + D/2)`, so the rows of `wq` and `wk` are permuted within each head
//! on import (as `transformers`' `convert_llama_weights_to_hf.py` does) and back on export.
//!
//! Layout after the header `dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len`
//! (a negative `vocab_size` means the classifier is not shared with the embedding):
//! `token_embedding [V,D]`, `rms_att [L,D]`, `wq [L,D,D]`, `wk [L,KVD,D]`, `wv [L,KVD,D]`,
//! `wo [L,D,D]`, `rms_ffn [L,D]`, `w1 [L,H,D]`, `w2 [L,D,H]`, `w3 [L,H,D]`, `rms_final [D]`,
//! then optionally `freq_cis_real`, `freq_cis_imag` (`[seq_len, head_dim/2]` each, ignored), then
//! `wcls [V,D]` when unshared.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use memmap2::Mmap;

use crate::config::{Family, ModelConfig, SpecialTokens};
use crate::error::{ModelError, Result};
use crate::params::{LayerParams, Linear, Params, TensorView, TensorViewMut};

const HEADER_BYTES: usize = 7 * 4;
/// RoPE base and RMSNorm epsilon that llama2.c's `run.c` hard-codes.
const LLAMA2C_THETA: f64 = 10000.0;
const LLAMA2C_EPS: f64 = 1e-5;

/// One per-layer array of the file; each is stored for every layer in turn.
#[derive(Clone, Copy)]
enum Slot {
    /// `rms_att`: `input_layernorm`.
    AttentionNorm,
    /// `rms_ffn`: `post_attention_layernorm`.
    FfnNorm,
    /// `wq`, `wk`, `wv`, `wo`, `w1`, `w2`, `w3`.
    Linear(Linear),
}

/// The per-layer arrays in file order (see the module doc).
const LAYER_SLOTS: [Slot; 9] = [
    Slot::AttentionNorm,
    Slot::Linear(Linear::QProj),
    Slot::Linear(Linear::KProj),
    Slot::Linear(Linear::VProj),
    Slot::Linear(Linear::OProj),
    Slot::FfnNorm,
    Slot::Linear(Linear::GateProj),
    Slot::Linear(Linear::DownProj),
    Slot::Linear(Linear::UpProj),
];

impl Slot {
    fn get(self, l: &LayerParams) -> TensorView<'_> {
        match self {
            Slot::AttentionNorm => l.input_layernorm.view(),
            Slot::FfnNorm => l.post_attention_layernorm.view(),
            Slot::Linear(linear) => linear.get(l),
        }
    }

    fn get_mut(self, l: &mut LayerParams) -> TensorViewMut<'_> {
        match self {
            Slot::AttentionNorm => l.input_layernorm.view_mut(),
            Slot::FfnNorm => l.post_attention_layernorm.view_mut(),
            Slot::Linear(linear) => linear.get_mut(l),
        }
    }

    /// Whether the rows are in llama2.c's interleaved RoPE order (`wq`, `wk`).
    fn interleaved(self) -> bool {
        matches!(self, Slot::Linear(Linear::QProj | Linear::KProj))
    }
}

/// Row permutation taking a llama2.c (interleaved RoPE) `wq`/`wk` `[n_heads·head_dim, cols]` to
/// Hugging Face's rotate-half layout: within each head, new row `j` is old row `2j` and new row
/// `j + head_dim/2` is old row `2j + 1`.
pub fn interleaved_to_rotate_half(w: &[f32], head_dim: usize, cols: usize) -> Vec<f32> {
    permute_rows(w, head_dim, cols, |j| {
        let half = head_dim / 2;
        if j < half {
            2 * j
        } else {
            2 * (j - half) + 1
        }
    })
}

/// Inverse of [`interleaved_to_rotate_half`].
pub fn rotate_half_to_interleaved(w: &[f32], head_dim: usize, cols: usize) -> Vec<f32> {
    permute_rows(w, head_dim, cols, |j| {
        let half = head_dim / 2;
        if j % 2 == 0 {
            j / 2
        } else {
            half + j / 2
        }
    })
}

/// New row `j` of each head block is old row `source(j)` of the same block.
fn permute_rows(
    w: &[f32],
    head_dim: usize,
    cols: usize,
    source: impl Fn(usize) -> usize,
) -> Vec<f32> {
    let mut out = vec![0.0; w.len()];
    for (dst_head, src_head) in out
        .chunks_exact_mut(head_dim * cols)
        .zip(w.chunks_exact(head_dim * cols))
    {
        for j in 0..head_dim {
            let s = source(j);
            dst_head[j * cols..(j + 1) * cols].copy_from_slice(&src_head[s * cols..(s + 1) * cols]);
        }
    }
    out
}

/// Header fields in file order.
struct Header {
    dim: usize,
    hidden_dim: usize,
    n_layers: usize,
    n_heads: usize,
    n_kv_heads: usize,
    vocab_size: usize,
    seq_len: usize,
    shared_classifier: bool,
}

impl Header {
    fn parse(path: &Path, bytes: &[u8]) -> Result<Self> {
        let Some(head) = bytes.get(..HEADER_BYTES) else {
            return Err(ModelError::format(
                path,
                format!("{} bytes is shorter than the {HEADER_BYTES}-byte llama2.c header; is this a llama2.c .bin?", bytes.len()),
            ));
        };
        if head[..4] == LLAMA2C_MAGIC.to_le_bytes() {
            let version = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
            return Err(ModelError::format(
                path,
                format!("unsupported llama2.c version {version} (magic \"ak42\"); export a version-0 (legacy) file, e.g. with llama2.c's `export.py --version 0`"),
            ));
        }
        let f: Vec<i32> = head
            .chunks_exact(4)
            .map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        let names = [
            "dim",
            "hidden_dim",
            "n_layers",
            "n_heads",
            "n_kv_heads",
            "vocab_size",
            "seq_len",
        ];
        for (i, (&v, name)) in f.iter().zip(names).enumerate() {
            let ok = if i == 5 {
                v != 0 && v != i32::MIN
            } else {
                v > 0
            };
            if !ok {
                return Err(ModelError::format(
                    path,
                    format!("header field `{name}` is {v}; this is not a llama2.c checkpoint or it is corrupt"),
                ));
            }
        }
        Ok(Header {
            dim: f[0] as usize,
            hidden_dim: f[1] as usize,
            n_layers: f[2] as usize,
            n_heads: f[3] as usize,
            n_kv_heads: f[4] as usize,
            vocab_size: f[5].unsigned_abs() as usize,
            seq_len: f[6] as usize,
            shared_classifier: f[5] > 0,
        })
    }

    fn config(&self, path: &Path) -> Result<ModelConfig> {
        if !self.dim.is_multiple_of(self.n_heads) {
            return Err(ModelError::format(
                path,
                format!(
                    "header dim {} is not a multiple of n_heads {}",
                    self.dim, self.n_heads
                ),
            ));
        }
        let config = ModelConfig {
            family: Family::Llama,
            dim: self.dim,
            n_layers: self.n_layers,
            n_heads: self.n_heads,
            n_kv_heads: self.n_kv_heads,
            head_dim: self.dim / self.n_heads,
            hidden_dim: self.hidden_dim,
            vocab_size: self.vocab_size,
            max_seq_len: self.seq_len,
            rope_theta: LLAMA2C_THETA,
            norm_eps: LLAMA2C_EPS,
            tied_embeddings: self.shared_classifier,
            qk_norm: false,
            special_tokens: SpecialTokens::default(),
        };
        config.validate().map_err(|e| {
            ModelError::format(path, format!("header describes an unusable model: {e}"))
        })?;
        Ok(config)
    }
}

/// First word of llama2.c's versioned (v1, v2) exports: "ak42" as a little-endian u32.
const LLAMA2C_MAGIC: u32 = 0x616b_3432;

/// Number of f32 values of the llama2.c arrays up to `rms_final`, and of the optional
/// `freq_cis` pair; `None` if the header's sizes overflow.
fn body_floats(c: &ModelConfig) -> Option<(usize, usize)> {
    let (d, l, h, v, kvd) = (c.dim, c.n_layers, c.hidden_dim, c.vocab_size, c.kv_dim());
    let per_layer = d
        .checked_mul(2)?
        .checked_add(d.checked_mul(d)?.checked_mul(2)?)?
        .checked_add(kvd.checked_mul(d)?.checked_mul(2)?)?
        .checked_add(h.checked_mul(d)?.checked_mul(3)?)?;
    let base = v
        .checked_mul(d)?
        .checked_add(per_layer.checked_mul(l)?)?
        .checked_add(d)?;
    let freq_cis = c.max_seq_len.checked_mul(c.head_dim)?;
    Some((base, freq_cis))
}

/// Reads a llama2.c checkpoint into a Llama config and Hugging Face-layout parameters.
pub fn read_llama2c(path: &Path) -> Result<(ModelConfig, Params)> {
    let file = File::open(path).map_err(|e| ModelError::io(path, e))?;
    // SAFETY: read-only map; the checkpoint must not be rewritten while it is being read.
    let bytes = unsafe { Mmap::map(&file) }.map_err(|e| ModelError::io(path, e))?;
    let header = Header::parse(path, &bytes)?;
    let config = header.config(path)?;
    let (base, freq_cis) = body_floats(&config)
        .ok_or_else(|| ModelError::format(path, "header sizes overflow; the file is corrupt"))?;
    let classifier = if header.shared_classifier {
        0
    } else {
        config.vocab_size * config.dim
    };
    let body = bytes.len() - HEADER_BYTES;
    let floats = body / 4;
    let layouts = [base + classifier, base + freq_cis + classifier];
    let Some(skip) = layouts
        .iter()
        .position(|&n| body.is_multiple_of(4) && floats == n)
        .map(|i| if i == 0 { 0 } else { freq_cis })
    else {
        return Err(ModelError::format(
            path,
            format!(
                "file has {} bytes but its header implies {} (or {} with freq_cis tables); the file is truncated or the header is wrong",
                bytes.len(),
                HEADER_BYTES + 4 * layouts[0],
                HEADER_BYTES + 4 * layouts[1]
            ),
        ));
    };

    let mut r = Reader {
        bytes: &bytes[HEADER_BYTES..],
        pos: 0,
    };
    let mut p = Params::try_zeros(&config)?;
    let (hd, d) = (config.head_dim, config.dim);
    r.fill(p.embed_tokens.data_mut());
    for slot in LAYER_SLOTS {
        for l in &mut p.layers {
            let mut t = slot.get_mut(l);
            if slot.interleaved() {
                let raw = r.take(t.len());
                t.data_mut()
                    .copy_from_slice(&interleaved_to_rotate_half(&raw, hd, d));
            } else {
                r.fill(t.data_mut());
            }
        }
    }
    r.fill(p.norm.data_mut());
    r.pos += 4 * skip;
    if let Some(t) = &mut p.lm_head {
        r.fill(t.data_mut());
    }
    p.check_finite(&path.display().to_string())?;
    Ok((config, p))
}

/// Sequential f32 reader over a buffer whose size was checked against the header up front.
struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn fill(&mut self, dst: &mut [f32]) {
        let src = &self.bytes[self.pos..self.pos + 4 * dst.len()];
        for (d, b) in dst.iter_mut().zip(src.chunks_exact(4)) {
            *d = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        }
        self.pos += src.len();
    }

    fn take(&mut self, n: usize) -> Vec<f32> {
        let mut v = vec![0.0; n];
        self.fill(&mut v);
        v
    }
}

/// Writes a llama2.c checkpoint that `run.c` loads: the legacy layout with `freq_cis` tables
/// (which `run.c` skips unconditionally) and `wcls` when the classifier is not shared.
/// Only configs llama2.c can express are accepted: Llama, `head_dim = dim / n_heads`,
/// RoPE base 10000 and RMSNorm epsilon 1e-5.
pub fn write_llama2c(path: &Path, config: &ModelConfig, params: &Params) -> Result<()> {
    config.validate()?;
    params.check_matches(config)?;
    let refuse = |what: String| {
        Err(ModelError::Config(format!(
            "llama2.c cannot express this model: {what}; export to a Hugging Face directory instead"
        )))
    };
    if config.family != Family::Llama {
        return refuse(format!(
            "family is {:?}, llama2.c is Llama only",
            config.family
        ));
    }
    if config.head_dim * config.n_heads != config.dim {
        return refuse(format!(
            "head_dim {} × n_heads {} ≠ dim {}",
            config.head_dim, config.n_heads, config.dim
        ));
    }
    if config.rope_theta != LLAMA2C_THETA || config.norm_eps != LLAMA2C_EPS {
        return refuse(format!(
            "rope_theta {} / norm_eps {} differ from llama2.c's fixed 10000 / 1e-5",
            config.rope_theta, config.norm_eps
        ));
    }
    let header_field = |name: &str, v: usize| {
        i32::try_from(v).map_err(|_| {
            ModelError::Config(format!("`{name}` {v} does not fit the llama2.c i32 header"))
        })
    };
    let vocab = header_field("vocab_size", config.vocab_size)?;
    let header = [
        header_field("dim", config.dim)?,
        header_field("hidden_dim", config.hidden_dim)?,
        header_field("n_layers", config.n_layers)?,
        header_field("n_heads", config.n_heads)?,
        header_field("n_kv_heads", config.n_kv_heads)?,
        if config.tied_embeddings {
            vocab
        } else {
            -vocab
        },
        header_field("max_seq_len", config.max_seq_len)?,
    ];

    let file = File::create(path).map_err(|e| ModelError::io(path, e))?;
    let mut w = BufWriter::new(file);
    let io = |e| ModelError::io(path, e);
    for v in header {
        w.write_all(&v.to_le_bytes()).map_err(io)?;
    }
    let (hd, d) = (config.head_dim, config.dim);
    let layers = &params.layers;
    // Same order as `read_llama2c`, one array at a time so nothing is copied whole.
    write_f32s(&mut w, params.embed_tokens.data()).map_err(io)?;
    for slot in LAYER_SLOTS {
        for l in layers {
            let t = slot.get(l).data();
            if slot.interleaved() {
                write_f32s(&mut w, &rotate_half_to_interleaved(t, hd, d)).map_err(io)?;
            } else {
                write_f32s(&mut w, t).map_err(io)?;
            }
        }
    }
    write_f32s(&mut w, params.norm.data()).map_err(io)?;
    // llama2.c's legacy `freq_cis_real` / `freq_cis_imag`, `[seq_len, head_dim/2]` each.
    let (cos, sin) =
        crate::cpu_ops::rope::angle_table(config.head_dim, config.max_seq_len, config.rope_theta);
    write_f32s(&mut w, &cos).map_err(io)?;
    write_f32s(&mut w, &sin).map_err(io)?;
    if let Some(t) = &params.lm_head {
        write_f32s(&mut w, t.data()).map_err(io)?;
    }
    w.flush().map_err(io)
}

fn write_f32s(w: &mut impl Write, values: &[f32]) -> std::io::Result<()> {
    for v in values {
        w.write_all(&v.to_le_bytes())?;
    }
    Ok(())
}
