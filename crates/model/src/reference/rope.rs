//! Rotary position embedding in Hugging Face's rotate-half layout.
//!
//! For a head vector `x` of size `D` and `i < D/2`, with `a = pos · theta^(-2i/D)`:
//! `out[i] = x[i] cos a - x[i+D/2] sin a`, `out[i+D/2] = x[i+D/2] cos a + x[i] sin a`.
//! (llama2.c pairs `x[2i], x[2i+1]` instead; its checkpoints are permuted on import.)
//!
//! Shapes: `x [batch·seq, n_heads·D]`, token-major; row `r` is at position `r % seq`.

/// Precomputed `cos a` and `sin a`, `[positions, D/2]` each.
pub struct RopeTable {
    half: usize,
    cos: Vec<f32>,
    sin: Vec<f32>,
}

impl RopeTable {
    /// Tables for head size `head_dim` (even) and positions `0..positions`. Angles are formed
    /// in f64 and rounded once, so the table is as exact as f32 allows.
    pub fn new(head_dim: usize, positions: usize, theta: f64) -> Self {
        let half = head_dim / 2;
        let mut cos = Vec::with_capacity(positions * half);
        let mut sin = Vec::with_capacity(positions * half);
        for pos in 0..positions {
            for i in 0..half {
                let inv_freq = theta.powf(-2.0 * i as f64 / head_dim as f64);
                let a = pos as f64 * inv_freq;
                cos.push(a.cos() as f32);
                sin.push(a.sin() as f32);
            }
        }
        RopeTable { half, cos, sin }
    }

    /// Rotates every head of every row of `x [rows, row_width]` in place (forward RoPE).
    pub fn forward(&self, x: &mut [f32], row_width: usize, seq: usize) {
        self.rotate(x, row_width, seq, 1.0);
    }

    /// Turns the output gradient `dx` into the input gradient, in place. RoPE is a rotation, so
    /// its backward is the inverse rotation (angle −a).
    pub fn backward(&self, dx: &mut [f32], row_width: usize, seq: usize) {
        self.rotate(dx, row_width, seq, -1.0);
    }

    /// Cost: `rows · row_width` multiply-adds ×2.
    fn rotate(&self, x: &mut [f32], row_width: usize, seq: usize, direction: f32) {
        let (half, head_dim) = (self.half, 2 * self.half);
        for (r, row) in x.chunks_exact_mut(row_width).enumerate() {
            let pos = r % seq;
            let cos = &self.cos[pos * half..(pos + 1) * half];
            let sin = &self.sin[pos * half..(pos + 1) * half];
            for head in row.chunks_exact_mut(head_dim) {
                let (lo, hi) = head.split_at_mut(half);
                for i in 0..half {
                    let (c, s) = (cos[i], direction * sin[i]);
                    let (a, b) = (lo[i], hi[i]);
                    lo[i] = a * c - b * s;
                    hi[i] = b * c + a * s;
                }
            }
        }
    }
}
