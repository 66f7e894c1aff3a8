//! Causal grouped-query attention as MIL, forward and backward, for one sequence of `s` tokens.
//!
//! Heads stay channel-major the whole way: a `[1, C, 1, S]` block reshapes for free to
//! `[1, heads, head_dim, S]`, and every product is arranged so that its result is again
//! `[head_dim, S]` per head. Only the forms peers run on hardware are emitted: a matmul
//! transpose flag only on a square `[S, S]` operand (scores, probabilities), an explicit
//! `transpose` for the rectangular `[head_dim, S]` ones (ane-reference §3.7), and by default
//! row sums as `reduce_sum` and no matmul with a constant operand ([`KernelForms`]).
//! Scores are `[1, heads, S(query), S(key)]`. No `scaled_dot_product_attention` op: the ANE
//! ignores its mask (ane-reference §5 #13), so the mask is added explicitly.
//!
//! The queries arrive **pre-scaled** by `head_dim^-½` (the CPU folds it in after RoPE, in
//! f32). An in-kernel scale would be an fp16 constant, and `head_dim^-½` is exactly
//! representable in fp16 only for powers of 4: for head_dim 24, 48 or 128 the rounded
//! constant shifts every score by about 1e-4 relative.

use anetrain_mil::{Builder, Bundle, DType, Var};

use crate::config::ModelConfig;
use crate::error::Result;

use super::forms::{KernelForms, RowSumForm};
use super::matmul::{INPUT, OUTPUT, SWAP_LAST};
use crate::error::ModelError;

/// What the causal mask adds above the diagonal: large enough that `exp` underflows to 0
/// after the softmax's max subtraction, small enough to stay far from fp16's ±65504 when a
/// score is added to it (ane-reference §6.5).
pub const MASK_VALUE: f32 = -1e4;

/// The causal mask `[S][S]`: 0 where key `t2 ≤` query `t`, [`MASK_VALUE`] above the diagonal.
pub fn causal_mask(s: usize) -> Vec<f32> {
    let mut m = vec![0.0; s * s];
    for t in 0..s {
        m[t * s + t + 1..(t + 1) * s].fill(MASK_VALUE);
    }
    m
}

/// Shapes shared by both kernels.
struct Heads {
    n_heads: usize,
    n_kv_heads: usize,
    head_dim: usize,
    s: usize,
}

impl Heads {
    fn new(config: &ModelConfig, s: usize) -> Heads {
        Heads {
            n_heads: config.n_heads,
            n_kv_heads: config.n_kv_heads,
            head_dim: config.head_dim,
            s,
        }
    }

    fn ratio(&self) -> usize {
        self.n_heads / self.n_kv_heads
    }

    /// Channels `[begin, begin + heads·head_dim)` of `x` as `[1, heads, head_dim, S]`.
    fn heads(&self, b: &mut Builder, x: Var, begin: usize, heads: usize) -> Result<Var> {
        let c = heads * self.head_dim;
        let v = b.slice(x, &[0, begin, 0, 0], &[1, c, 1, self.s])?;
        b.reshape(v, &[1, heads, self.head_dim, self.s])
            .map_err(ModelError::from)
    }

    /// Repeats each kv head `ratio` times in place, `[1, KVH, HD, S] → [1, NH, HD, S]`, so query
    /// head `h` meets kv head `h / ratio` (Hugging Face's `repeat_kv`, [`ModelConfig::kv_head`]).
    fn tile(&self, b: &mut Builder, kv: Var) -> Result<Var> {
        let r = self.ratio();
        if r == 1 {
            return Ok(kv);
        }
        let flat = self.head_dim * self.s;
        let one = b.reshape(kv, &[1, self.n_kv_heads, 1, flat])?;
        let copies = vec![one; r];
        let tiled = b.concat(&copies, 2)?;
        b.reshape(tiled, &[1, self.n_heads, self.head_dim, self.s])
            .map_err(ModelError::from)
    }

    /// Sums the gradients of the `ratio` query heads sharing each kv head, `[1, NH, HD, S] →
    /// [1, KVH·HD, 1, S]`. The sum runs over at most a handful of heads, so reduce_sum's fp16
    /// accumulator (§5 #23) costs nothing here.
    fn reduce(&self, b: &mut Builder, full: Var) -> Result<Var> {
        let (r, flat) = (self.ratio(), self.head_dim * self.s);
        let kv_c = self.n_kv_heads * self.head_dim;
        if r == 1 {
            return b
                .reshape(full, &[1, kv_c, 1, self.s])
                .map_err(ModelError::from);
        }
        let grouped = b.reshape(full, &[1, self.n_kv_heads, r, flat])?;
        let summed = b.reduce_sum(grouped, &[2], true)?;
        b.reshape(summed, &[1, kv_c, 1, self.s])
            .map_err(ModelError::from)
    }

    /// Softmax probabilities `[1, NH, S, S]` from pre-scaled queries and tiled keys.
    fn probabilities(&self, b: &mut Builder, q_scaled: Var, k: Var) -> Result<Var> {
        let s = self.s;
        let mask = b.weight("mask", DType::Fp16, [1, 1, s, s], &causal_mask(s))?;
        // scores[t, t2] = Σ_i q[i, t] k[i, t2]
        let q_rows = b.transpose(q_scaled, &SWAP_LAST)?;
        let scores = b.matmul(q_rows, k)?;
        let masked = b.add(scores, mask)?;
        b.softmax(masked, -1).map_err(ModelError::from)
    }
}

/// Sums `x` `[1, N, R, K]` over its last axis into `[1, N, R, 1]`. By default with
/// reduce_sum, as maderix's sdpaBwd2 does on hardware; its fp16 accumulator (§5 #23) is
/// tolerable for attention's `P ⊙ dP`, a probability-weighted sum whose terms share the
/// scale of dP, not a long signed sum of unrelated magnitudes.
pub(crate) fn row_sum(b: &mut Builder, x: Var, form: RowSumForm) -> Result<Var> {
    match form {
        RowSumForm::ReduceSum => b.reduce_sum(x, &[3], true),
        RowSumForm::OnesMatmul => {
            let k = b.shape(x)[3];
            let ones = b.weight("row_sum_ones", DType::Fp16, [1, 1, k, 1], &vec![1.0; k])?;
            b.matmul(x, ones)
        }
    }
    .map_err(ModelError::from)
}

/// `attention_fwd`: input `[1, Q+2KV, 1, S]` (q normed, rotated and scaled by
/// `head_dim^-½`; k normed and rotated; v) → output `[1, Q, 1, S]`, `softmax(qᵀk + mask) v`
/// per head, heads in order.
pub fn attention_fwd(config: &ModelConfig, s: usize) -> Result<Bundle> {
    let g = Heads::new(config, s);
    let (q_c, kv_c) = (config.q_dim(), config.kv_dim());
    let mut b = Builder::new();
    let x = b.input(INPUT, DType::Fp16, [1, q_c + 2 * kv_c, 1, s])?;
    let q = g.heads(&mut b, x, 0, g.n_heads)?;
    let k = g.heads(&mut b, x, q_c, g.n_kv_heads)?;
    let v = g.heads(&mut b, x, q_c + kv_c, g.n_kv_heads)?;
    let (k, v) = (g.tile(&mut b, k)?, g.tile(&mut b, v)?);
    let p = g.probabilities(&mut b, q, k)?;
    // out[i, t] = Σ_t2 v[i, t2] p[t, t2]
    let out = b.matmul_t(v, p, false, true)?;
    let y = b.reshape(out, &[1, q_c, 1, s])?;
    b.output(y, OUTPUT)?;
    b.finish().map_err(ModelError::from)
}

/// `attention_bwd`: input `[1, 2Q+2KV, 1, S]` (q pre-scaled as for [`attention_fwd`], k, v,
/// d_out) → output `[1, Q+2KV, 1, S]` (dq with respect to the *scaled* q, dk, dv).
/// Recomputes the probabilities `P`, then `dV = Pᵀ dO`, `dP = dO Vᵀ`,
/// `dS = P ⊙ (dP − rowsum(P ⊙ dP))`, `dq = dS K`, `dk = dSᵀ q`; kv gradients are summed over
/// the query heads that share each kv head.
pub fn attention_bwd(config: &ModelConfig, s: usize, forms: KernelForms) -> Result<Bundle> {
    let g = Heads::new(config, s);
    let (q_c, kv_c) = (config.q_dim(), config.kv_dim());
    let mut b = Builder::new();
    let x = b.input(INPUT, DType::Fp16, [1, 2 * q_c + 2 * kv_c, 1, s])?;
    let q = g.heads(&mut b, x, 0, g.n_heads)?;
    let k = g.heads(&mut b, x, q_c, g.n_kv_heads)?;
    let v = g.heads(&mut b, x, q_c + kv_c, g.n_kv_heads)?;
    let d_out = g.heads(&mut b, x, q_c + 2 * kv_c, g.n_heads)?;
    let (k, v) = (g.tile(&mut b, k)?, g.tile(&mut b, v)?);
    let p = g.probabilities(&mut b, q, k)?;

    // dv[i, t2] = Σ_t dO[i, t] p[t, t2]
    let dv = b.matmul(d_out, p)?;
    // dp[t, t2] = Σ_i dO[i, t] v[i, t2]
    let d_rows = b.transpose(d_out, &SWAP_LAST)?;
    let dp = b.matmul(d_rows, v)?;
    let p_dp = b.mul(p, dp)?;
    let row = row_sum(&mut b, p_dp, forms.row_sum)?;
    let centred = b.sub(dp, row)?;
    let ds = b.mul(p, centred)?;
    // dq[i, t] = Σ_t2 k[i, t2] ds[t, t2]; dk[i, t2] = Σ_t q[i, t] ds[t, t2]
    let dq = b.matmul_t(k, ds, false, true)?;
    let dk = b.matmul(q, ds)?;

    let dq = b.reshape(dq, &[1, q_c, 1, s])?;
    let dk = g.reduce(&mut b, dk)?;
    let dv = g.reduce(&mut b, dv)?;
    let y = b.concat(&[dq, dk, dv], 1)?;
    b.output(y, OUTPUT)?;
    b.finish().map_err(ModelError::from)
}
