//! What depends on where a chunk sits in the sequence: the rotary angles of its columns and
//! the additive mask that tells each query column which cache slots it may read.

use crate::kernels::MASK_VALUE;

/// RoPE (Hugging Face rotate-half layout, as [`crate::cpu_ops::rope`]) for a `[heads·D][B]`
/// block whose column `j` sits at position `start + j`.
#[derive(Clone, Debug)]
pub struct RotaryTable {
    half: usize,
    /// `cos a`, `[positions][D/2]`, position-major so one column reads one row.
    cos: Vec<f32>,
    sin: Vec<f32>,
}

impl RotaryTable {
    /// Tables for head size `head_dim` (even), positions `0..positions` and base `theta`
    /// ([`crate::cpu_ops::rope::angle_table`]).
    pub fn new(head_dim: usize, positions: usize, theta: f64) -> RotaryTable {
        let (cos, sin) = crate::cpu_ops::rope::angle_table(head_dim, positions, theta);
        RotaryTable {
            half: head_dim / 2,
            cos,
            sin,
        }
    }

    /// Number of positions the table covers.
    pub fn positions(&self) -> usize {
        self.cos.len() / self.half.max(1)
    }

    /// Rotates every head of `x [heads·D][width]` in place; column `j` is at position
    /// `start + j`, and `start + width` must not exceed [`RotaryTable::positions`].
    /// Cost: `4·heads·D·width` flops.
    pub fn rotate(&self, x: &mut [f32], width: usize, start: usize) {
        let half = self.half;
        for head in x.chunks_exact_mut(2 * half * width) {
            let (lo, hi) = head.split_at_mut(half * width);
            for j in 0..width {
                let row = (start + j) * half;
                let (cos, sin) = (&self.cos[row..row + half], &self.sin[row..row + half]);
                for i in 0..half {
                    let (a, b) = (lo[i * width + j], hi[i * width + j]);
                    lo[i * width + j] = a * cos[i] - b * sin[i];
                    hi[i * width + j] = b * cos[i] + a * sin[i];
                }
            }
        }
    }
}

/// Fills `mask [width][cache_len]` for a chunk of `n ≥ 1` tokens at positions
/// `start..start + n`: row `j` is 0 at slots `≤ start + j` and `MASK_VALUE` after, so each
/// query sees the cache and the chunk up to itself (causal), never unused or stale slots.
/// Rows `j ≥ n` are padding columns; they copy row `n − 1` so their softmax stays finite.
/// Cost: `width · cache_len` stores per chunk.
pub fn fill_mask(mask: &mut [f32], cache_len: usize, start: usize, n: usize) {
    for (j, row) in mask.chunks_exact_mut(cache_len).enumerate() {
        let visible = (start + j.min(n - 1) + 1).min(cache_len);
        row[..visible].fill(0.0);
        row[visible..].fill(MASK_VALUE);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotation_at_an_offset_matches_the_reference_table() {
        let (hd, heads, width, start) = (8, 2, 3, 5);
        let table = RotaryTable::new(hd, 16, 10000.0);
        let reference = crate::reference::rope::RopeTable::new(hd, 16, 10000.0);
        let x: Vec<f32> = (0..heads * hd * width)
            .map(|i| (i as f32 * 0.37).sin())
            .collect();
        let mut ours = x.clone();
        table.rotate(&mut ours, width, start);
        // Reference: token-major rows at positions 0..16; pick rows start..start+width.
        let mut rows = vec![0.0; 16 * heads * hd];
        for j in 0..width {
            for c in 0..heads * hd {
                rows[(start + j) * heads * hd + c] = x[c * width + j];
            }
        }
        reference.forward(&mut rows, heads * hd, 16);
        for j in 0..width {
            for c in 0..heads * hd {
                let want = rows[(start + j) * heads * hd + c];
                assert!((ours[c * width + j] - want).abs() < 1e-6, "c {c} j {j}");
            }
        }
    }

    #[test]
    fn mask_rows_open_up_to_their_own_position() {
        let mut mask = vec![1.0; 4 * 8];
        fill_mask(&mut mask, 8, 3, 2);
        let open = |row: &[f32]| row.iter().take_while(|&&v| v == 0.0).count();
        let rows: Vec<usize> = mask.chunks(8).map(open).collect();
        assert_eq!(rows, vec![4, 5, 5, 5]);
        assert!(mask[4..8].iter().all(|&v| v == MASK_VALUE));
    }
}
