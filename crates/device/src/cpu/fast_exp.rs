//! A branch-free `exp` for the softmax-style loops of a training step (attention softmax and
//! SiLU on the CPU device, cross-entropy over the vocabulary in the model's CPU ops). libm's
//! `expf` is a scalar call per element; this one is plain arithmetic the compiler vectorises,
//! at a relative error within a few f32 ulps.
//!
//! Method: `exp(x) = 2ⁿ · exp(r)` with `n = round(x / ln 2)` and `|r| ≤ ln 2 / 2`; `exp(r)` is
//! its Taylor series to degree 7, whose truncation error `|r|⁸/8!` is below 2e-9 there.

/// Below this `exp(x)` is subnormal or zero in f32 (`exp(-87.34)` is the smallest normal);
/// such inputs return exactly 0.
const LOW: f32 = -87.0;
/// Above this `exp(x)` overflows f32; inputs are clamped here.
const HIGH: f32 = 88.0;
/// `1.5 · 2²³`: adding it rounds an f32 of magnitude below 2²² to an integer, which then sits
/// in the low mantissa bits (so `n` is read from the bits without a float-to-int call).
const ROUNDER: f32 = 12_582_912.0;
/// `ln 2` split so `n · LN2_HI` is exact for `|n| ≤ 2⁹`, keeping `r` accurate.
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;

/// `exp(x)` for finite or infinite `x`; 0 below [`LOW`] (flushing the subnormal tail), NaN for
/// NaN. Cost: about 15 float and integer operations, no branches, no calls.
#[inline]
pub fn exp(x: f32) -> f32 {
    let xc = x.clamp(LOW, HIGH);
    let t = xc * std::f32::consts::LOG2_E + ROUNDER;
    let n = t - ROUNDER;
    // The rounded integer is in the low mantissa bits of `t`, offset by 2²² (from 1.5 · 2²³).
    let ni = (t.to_bits() as i32) - 0x4B40_0000;
    let r = (xc - n * LN2_HI) - n * LN2_LO;
    // Horner form of 1 + r + r²/2! + … + r⁷/7!.
    let p = 1.0 / 5040.0;
    let p = p * r + 1.0 / 720.0;
    let p = p * r + 1.0 / 120.0;
    let p = p * r + 1.0 / 24.0;
    let p = p * r + 1.0 / 6.0;
    let p = p * r + 0.5;
    let p = p * r + 1.0;
    let p = p * r + 1.0;
    let scale = f32::from_bits(((ni + 127) as u32) << 23);
    let y = p * scale;
    if x < LOW {
        0.0
    } else if x.is_nan() {
        x
    } else {
        y
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_f64_exp_within_a_few_ulps() {
        let mut worst = 0.0f64;
        let mut x = -87.0f32;
        while x <= 88.0 {
            let want = (x as f64).exp();
            let got = exp(x) as f64;
            worst = worst.max(((got - want) / want).abs());
            x += 0.001_37;
        }
        // f32 epsilon is 1.19e-7; a few ulps of error is invisible next to the rounding of
        // the logits themselves.
        assert!(worst < 4e-7, "worst relative error {worst}");
    }

    #[test]
    fn edge_inputs() {
        assert_eq!(exp(0.0), 1.0);
        assert_eq!(exp(-1e4), 0.0);
        assert_eq!(exp(f32::NEG_INFINITY), 0.0);
        assert_eq!(exp(-87.5), 0.0);
        assert!(exp(f32::NAN).is_nan());
        assert!(exp(100.0).is_finite());
        assert!((exp(1.0) - std::f32::consts::E).abs() < 1e-6);
    }
}
