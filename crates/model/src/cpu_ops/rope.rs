//! Rotary position embedding in Hugging Face's rotate-half layout, on `[heads·D][S]` blocks.
//!
//! For head vector `x` of size `D`, `i < D/2` and `a = t · theta^(-2i/D)` at position `t`:
//! `out[i] = x[i] cos a − x[i+D/2] sin a`, `out[i+D/2] = x[i+D/2] cos a + x[i] sin a`. In the
//! channel-major layout channels `i` and `i + D/2` of a head are two rows of `S` positions, so
//! the rotation is a pair of vectorised row updates. Cost `O(C·S)`.

use anetrain_device::cpu::PAR_MIN;
use rayon::prelude::*;

/// Precomputed `cos a` and `sin a`, `[D/2][S]` each (row `i` over positions `0..S`).
#[derive(Clone, Debug)]
pub struct Rope {
    half: usize,
    s: usize,
    cos: Vec<f32>,
    sin: Vec<f32>,
}

/// `cos a` and `sin a` for `a = pos · theta^(-2i/D)`, `[positions][D/2]` each: the one RoPE
/// angle table, which training, generation and llama2.c's `freq_cis` export all read. Angles
/// are formed in f64 and rounded once, as in [`crate::reference::rope`].
pub fn angle_table(head_dim: usize, positions: usize, theta: f64) -> (Vec<f32>, Vec<f32>) {
    let half = head_dim / 2;
    let mut cos = Vec::with_capacity(positions * half);
    let mut sin = Vec::with_capacity(positions * half);
    for pos in 0..positions {
        for i in 0..half {
            let a = pos as f64 * theta.powf(-2.0 * i as f64 / head_dim as f64);
            cos.push(a.cos() as f32);
            sin.push(a.sin() as f32);
        }
    }
    (cos, sin)
}

impl Rope {
    /// Tables for head size `head_dim` (even), positions `0..s` and base `theta`, from
    /// [`angle_table`] laid out `[D/2][S]`.
    pub fn new(head_dim: usize, s: usize, theta: f64) -> Rope {
        let half = head_dim / 2;
        let (by_pos_cos, by_pos_sin) = angle_table(head_dim, s, theta);
        let transpose =
            |t: &[f32]| -> Vec<f32> { (0..half * s).map(|k| t[(k % s) * half + k / s]).collect() };
        Rope {
            half,
            s,
            cos: transpose(&by_pos_cos),
            sin: transpose(&by_pos_sin),
        }
    }

    /// Rotates every head of `x [heads·D][S]` in place.
    pub fn forward(&self, x: &mut [f32]) {
        self.rotate(x, 1.0);
    }

    /// Turns the gradient of the rotated values into the gradient of the inputs, in place:
    /// the inverse rotation (angle `−a`).
    pub fn backward(&self, dx: &mut [f32]) {
        self.rotate(dx, -1.0);
    }

    /// Rotates every head, heads spread over rayon's threads when `x` is large.
    fn rotate(&self, x: &mut [f32], direction: f32) {
        let (half, s) = (self.half, self.s);
        let head = |head: &mut [f32]| {
            let (lo, hi) = head.split_at_mut(half * s);
            for i in 0..half {
                let (cos, sin) = (&self.cos[i * s..][..s], &self.sin[i * s..][..s]);
                let (lo_i, hi_i) = (&mut lo[i * s..][..s], &mut hi[i * s..][..s]);
                for t in 0..s {
                    let (c, sn) = (cos[t], direction * sin[t]);
                    let (a, b) = (lo_i[t], hi_i[t]);
                    lo_i[t] = a * c - b * sn;
                    hi_i[t] = b * c + a * sn;
                }
            }
        };
        if x.len() < PAR_MIN {
            x.chunks_exact_mut(2 * half * s).for_each(head);
        } else {
            x.par_chunks_exact_mut(2 * half * s).for_each(head);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reference::rope::RopeTable;

    #[test]
    fn channel_major_rotation_matches_the_reference_and_inverts() {
        check_against_reference(2, 6, 7);
    }

    /// Large enough for the multi-threaded path.
    #[test]
    fn threaded_rotation_matches_the_reference() {
        const { assert!(4 * 64 * 200 >= PAR_MIN) };
        check_against_reference(4, 64, 200);
    }

    fn check_against_reference(heads: usize, d: usize, s: usize) {
        let x: Vec<f32> = (0..heads * d * s)
            .map(|i| (i as f32 * 0.53).sin())
            .collect();
        // Token-major copy: row t holds every head at position t.
        let mut x_tm: Vec<f32> = (0..s * heads * d)
            .map(|i| x[(i % (heads * d)) * s + i / (heads * d)])
            .collect();
        RopeTable::new(d, s, 1e4).forward(&mut x_tm, heads * d, s);
        let rope = Rope::new(d, s, 1e4);
        let mut y = x.clone();
        rope.forward(&mut y);
        for c in 0..heads * d {
            for t in 0..s {
                assert!((y[c * s + t] - x_tm[t * heads * d + c]).abs() < 1e-6);
            }
        }
        rope.backward(&mut y);
        assert!(y.iter().zip(&x).all(|(a, b)| (a - b).abs() < 1e-5));
    }
}
