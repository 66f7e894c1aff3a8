//! The project's seeded PRNG: data order, initialisation and sampling all draw from it.
//!
//! Data order is part of a run's reproducibility contract (same seed, same batches, on every
//! platform and every version of every dependency), so the generator is SplitMix64 written out
//! here rather than borrowed from a crate whose output stream might change between releases.

/// SplitMix64 (Steele, Lea, Flood 2014): 64 bits of state, one add and a mixing function per draw.
#[derive(Clone, Debug)]
pub struct SplitMix64 {
    state: u64,
}

const GOLDEN_GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

/// The SplitMix64 output function: a bijective avalanche mix of 64 bits.
/// The 64-bit FNV-1a hash of `bytes`: a stable key for names and file contents (not for
/// security).
pub fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01B3)
    })
}

fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl SplitMix64 {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        SplitMix64 { state: seed }
    }

    /// An independent generator for sub-stream `index` of `seed` (e.g. one per epoch), so
    /// sub-stream `e` can be produced without drawing through sub-streams `0..e`.
    pub fn derive(seed: u64, index: u64) -> Self {
        SplitMix64::new(mix64(seed) ^ mix64(index.wrapping_add(GOLDEN_GAMMA)))
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(GOLDEN_GAMMA);
        mix64(self.state)
    }

    /// Uniform in `[0, 1)` with 53 random bits.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// A value in `0..n` (`n > 0`) by widening multiply; the bias is below `n / 2^64`, far
    /// beneath anything data ordering could notice.
    pub fn below(&mut self, n: usize) -> usize {
        ((u128::from(self.next_u64()) * n as u128) >> 64) as usize
    }

    /// Shuffles `items` in place (Fisher–Yates): one draw and one swap per element.
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i + 1);
            items.swap(i, j);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_published_splitmix64_outputs() {
        // Reference values of SplitMix64 seeded with 1234567 (from the algorithm's C reference
        // implementation by Vigna), so the stream is pinned across platforms and releases.
        let mut r = SplitMix64::new(1234567);
        let expected = [
            6457827717110365317u64,
            3203168211198807973,
            9817491932198370423,
            4593380528125082431,
            16408922859458223821,
        ];
        for e in expected {
            assert_eq!(r.next_u64(), e);
        }
    }

    #[test]
    fn below_stays_in_range_and_covers_it() {
        let mut r = SplitMix64::new(7);
        let mut seen = [false; 5];
        for _ in 0..200 {
            let v = r.below(5);
            assert!(v < 5);
            seen[v] = true;
        }
        assert!(seen.iter().all(|&s| s));
    }
}
