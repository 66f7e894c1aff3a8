//! AdamW's and SGD's per-element arithmetic over fp32 or bf16 state, cut into pieces that
//! run in parallel without changing a bit of the result.

use half::bf16;
use rayon::prelude::*;

use super::OptimizerSpec;

/// Elements per parallel job: big enough that scheduling costs nothing next to the update,
/// small enough that a 9M-element embedding spreads over every core.
pub(super) const CHUNK: usize = 1 << 15;

/// One step's arithmetic: the spec with the step's learning rate and bias corrections, worked
/// out once per step so every chunk uses the very same values.
pub(super) struct Rule {
    spec: OptimizerSpec,
    lr: f32,
    /// Every gradient is multiplied by this before use (unscaling and clipping).
    grad_scale: f32,
    /// Adam's bias corrections `1 - β^t` (unused by SGD).
    c1: f32,
    c2: f32,
}

impl Rule {
    pub(super) fn new(spec: OptimizerSpec, updates: u64, lr: f32, grad_scale: f32) -> Rule {
        let t = updates as i32;
        let (c1, c2) = match spec {
            OptimizerSpec::Adamw { beta1, beta2, .. } => (1.0 - beta1.powi(t), 1.0 - beta2.powi(t)),
            OptimizerSpec::Sgd { .. } => (1.0, 1.0),
        };
        Rule {
            spec,
            lr,
            grad_scale,
            c1,
            c2,
        }
    }
}

/// One parameter tensor's buffers: weights, gradient and state of element type `T` (`[m, v]`
/// for AdamW, `[momentum]` or `[]` for SGD), and whether weight decay applies (not to 1-D
/// norm gains).
pub(super) struct TensorSlices<'a, T> {
    pub(super) decays: bool,
    pub(super) w: &'a mut [f32],
    pub(super) g: &'a [f32],
    pub(super) state: Vec<&'a mut [T]>,
}

impl<'a, T> TensorSlices<'a, T> {
    /// Cuts the buffers into aligned pieces of at most `chunk` elements.
    fn split(self, chunk: usize, out: &mut Vec<TensorSlices<'a, T>>) {
        let mut states: Vec<_> = self
            .state
            .into_iter()
            .map(|s| s.chunks_mut(chunk))
            .collect();
        for (w, g) in self.w.chunks_mut(chunk).zip(self.g.chunks(chunk)) {
            out.push(TensorSlices {
                decays: self.decays,
                w,
                g,
                state: states.iter_mut().filter_map(Iterator::next).collect(),
            });
        }
    }
}

/// The update of one piece: weights, gradient and state slices of element type `T`.
pub(super) type UpdateFn<T> = fn(&Rule, bool, &mut [f32], &[f32], &mut [&mut [T]]);

/// Applies `rule` to every element of `tensors` by `update`, in parallel pieces of `chunk`
/// elements.
pub(super) fn update_chunked<T: Send>(
    rule: &Rule,
    tensors: Vec<TensorSlices<'_, T>>,
    chunk: usize,
    update: UpdateFn<T>,
) {
    let mut pieces = Vec::new();
    for t in tensors {
        t.split(chunk, &mut pieces);
    }
    pieces
        .into_par_iter()
        .for_each(|mut p| update(rule, p.decays, p.w, p.g, &mut p.state));
}

anetrain_device::simd_versions! {
    /// Updates weights `w` from gradient `g` and state buffers (`[m, v]` for AdamW,
    /// `[momentum]` or `[]` for SGD), element by element, in the widest vectors the CPU has
    /// ([`simd_versions`](anetrain_device::simd_versions)).
    pub(super) fn update_slices(
        rule: &Rule,
        decays: bool,
        w: &mut [f32],
        g: &[f32],
        state: &mut [&mut [f32]],
    ) {
        let (lr, s) = (rule.lr, rule.grad_scale);
        match (rule.spec, state) {
            (OptimizerSpec::Adamw { .. }, [m, v]) => {
                let adam = AdamElement::new(rule, decays);
                let moments = m.iter_mut().zip(v.iter_mut());
                for ((w, &g), (m, v)) in w.iter_mut().zip(g).zip(moments) {
                    (*m, *v) = adam.update(w, g, *m, *v);
                }
            }
            (
                OptimizerSpec::Sgd {
                    momentum,
                    weight_decay,
                },
                [b],
            ) => {
                let wd = if decays { weight_decay } else { 0.0 };
                for ((w, &g), b) in w.iter_mut().zip(g).zip(b.iter_mut()) {
                    *b = momentum * *b + g * s;
                    *w -= lr * (*b + wd * *w);
                }
            }
            (OptimizerSpec::Sgd { weight_decay, .. }, _) => {
                let wd = if decays { weight_decay } else { 0.0 };
                for (w, &g) in w.iter_mut().zip(g) {
                    *w -= lr * (g * s + wd * *w);
                }
            }
            // `Optimizer::new` allocates exactly the buffers `state_names` lists for the spec.
            (OptimizerSpec::Adamw { .. }, _) => unreachable!("AdamW always has two state buffers"),
        }
    }
}

anetrain_device::simd_versions! {
    /// AdamW over bf16 moments (SGD never keeps bf16 state): each moment is loaded, updated in
    /// f32 exactly as [`update_slices`] does, used in f32 for the weight, and stored rounded to
    /// nearest even. In the widest vectors, as [`update_slices`].
    pub(super) fn update_slices_bf16(
        rule: &Rule,
        decays: bool,
        w: &mut [f32],
        g: &[f32],
        state: &mut [&mut [bf16]],
    ) {
        let (OptimizerSpec::Adamw { .. }, [m, v]) = (rule.spec, state) else {
            unreachable!("`Optimizer::new` keeps bf16 state only for AdamW's two moments")
        };
        let adam = AdamElement::new(rule, decays);
        let moments = m.iter_mut().zip(v.iter_mut());
        for ((w, &g), (m, v)) in w.iter_mut().zip(g).zip(moments) {
            let (m32, v32) = adam.update(w, g, widen(*m), widen(*v));
            *m = round_to_bf16(m32);
            *v = round_to_bf16(v32);
        }
    }
}

/// AdamW's update of one element, shared by the fp32 and bf16 loops so both compute the very
/// same f32 values.
struct AdamElement {
    beta1: f32,
    beta2: f32,
    eps: f32,
    /// Weight decay, or 0 for tensors that do not decay.
    wd: f32,
    lr: f32,
    grad_scale: f32,
    c1: f32,
    c2: f32,
}

impl AdamElement {
    /// The element update of `rule`, an AdamW rule (SGD's `rule.spec` has none of these
    /// fields; callers match on it first), for a tensor that `decays` or not.
    fn new(rule: &Rule, decays: bool) -> Self {
        let OptimizerSpec::Adamw {
            beta1,
            beta2,
            eps,
            weight_decay,
            ..
        } = rule.spec
        else {
            unreachable!("an AdamW element is only built for an AdamW rule")
        };
        AdamElement {
            beta1,
            beta2,
            eps,
            wd: if decays { weight_decay } else { 0.0 },
            lr: rule.lr,
            grad_scale: rule.grad_scale,
            c1: rule.c1,
            c2: rule.c2,
        }
    }

    /// Moves `w` by gradient `g` and returns the new moments `(m, v)` from the old ones.
    #[inline(always)]
    fn update(&self, w: &mut f32, g: f32, m: f32, v: f32) -> (f32, f32) {
        let g = g * self.grad_scale;
        let m = self.beta1 * m + (1.0 - self.beta1) * g;
        let v = self.beta2 * v + (1.0 - self.beta2) * g * g;
        let m_hat = m / self.c1;
        let v_hat = v / self.c2;
        *w -= self.lr * (m_hat / (v_hat.sqrt() + self.eps) + self.wd * *w);
        (m, v)
    }
}

/// `x` rounded to the nearest bf16, ties to even: `half::bf16::from_f32` bit for bit, but
/// without branches, so the update loop vectorises (with half's conversion it ran 4.7× slower
/// than the fp32 update).
#[inline(always)]
fn round_to_bf16(x: f32) -> bf16 {
    let bits = x.to_bits();
    // Adding just under half a bf16 step, plus the kept part's lowest bit, carries into the
    // kept part exactly when round-to-nearest-even rounds up.
    let rounded = (bits.wrapping_add(0x7FFF + ((bits >> 16) & 1)) >> 16) as u16;
    let quiet_nan = (bits >> 16) as u16 | 0x0040;
    bf16::from_bits(if x.is_nan() { quiet_nan } else { rounded })
}

/// The f32 of `b` (exact: bf16 is f32's upper half).
#[inline(always)]
fn widen(b: bf16) -> f32 {
    f32::from_bits((b.to_bits() as u32) << 16)
}

#[cfg(test)]
mod tests {
    use super::super::StatePrecision;
    use super::*;
    use anetrain_data::rng::SplitMix64;

    /// Buffers of odd sizes (around and across chunk boundaries) filled from `seed`.
    fn buffers(seed: u64, sizes: &[usize]) -> Vec<Vec<f32>> {
        let mut rng = SplitMix64::new(seed);
        sizes
            .iter()
            .map(|&n| (0..n).map(|_| rng.unit() as f32 * 2.0 - 1.0).collect())
            .collect()
    }

    /// Runs three steps of `spec` by `update` over the buffers with pieces of `chunk`
    /// elements; returns weights and state.
    fn run<T: Copy + Default + Send>(
        spec: OptimizerSpec,
        chunk: usize,
        update: UpdateFn<T>,
    ) -> (Vec<Vec<f32>>, Vec<Vec<Vec<T>>>) {
        let sizes = [1, 7, 33, 1000, 3 * 1024 + 5];
        let mut w = buffers(1, &sizes);
        let mut state: Vec<Vec<Vec<T>>> = spec
            .state_names()
            .iter()
            .map(|_| sizes.iter().map(|&n| vec![T::default(); n]).collect())
            .collect();
        for step in 1..=3u64 {
            let g = buffers(10 + step, &sizes);
            let rule = Rule::new(spec, step, 1e-2, 0.75);
            let mut per_tensor: Vec<Vec<&mut [T]>> = sizes.iter().map(|_| Vec::new()).collect();
            for s in &mut state {
                for (slot, buf) in per_tensor.iter_mut().zip(s.iter_mut()) {
                    slot.push(buf.as_mut_slice());
                }
            }
            let tensors = w
                .iter_mut()
                .zip(&g)
                .zip(per_tensor)
                .enumerate()
                .map(|(i, ((w, g), state))| TensorSlices {
                    decays: i % 2 == 0,
                    w,
                    g,
                    state,
                })
                .collect();
            update_chunked(&rule, tensors, chunk, update);
        }
        (w, state)
    }

    #[test]
    fn bf16_rounding_and_widening_match_the_half_crate_bit_for_bit() {
        let mut rng = SplitMix64::new(5);
        let edges = [
            0.0f32,
            -0.0,
            1.0,
            f32::MAX,
            f32::MIN_POSITIVE,
            1e-40,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::NAN,
            // Exact ties between two bf16 values, to even in both directions.
            f32::from_bits(0x3F80_8000),
            f32::from_bits(0x3F81_8000),
            f32::from_bits(0x7F7F_8000),
        ];
        let random = (0..1 << 20).map(|_| f32::from_bits(rng.next_u64() as u32));
        for x in edges.into_iter().chain(random) {
            let (ours, theirs) = (round_to_bf16(x), bf16::from_f32(x));
            assert_eq!(
                ours.to_bits(),
                theirs.to_bits(),
                "{x:e} ({:#010x})",
                x.to_bits()
            );
            if !x.is_nan() {
                assert_eq!(widen(ours).to_bits(), theirs.to_f32().to_bits());
            }
        }
    }

    #[test]
    fn updates_are_bit_identical_for_every_chunk_size() {
        for spec in [
            OptimizerSpec::adamw(0.1),
            OptimizerSpec::sgd(0.1),
            OptimizerSpec::Sgd {
                momentum: 0.0,
                weight_decay: 0.1,
            },
        ] {
            // One piece per tensor is how the optimizer worked before chunking.
            let whole = run(spec, usize::MAX, update_slices);
            for chunk in [1, 3, 64, 1000, CHUNK] {
                let pieces = run(spec, chunk, update_slices);
                assert_eq!(pieces, whole, "{spec:?} with chunks of {chunk}");
            }
            assert_ne!(whole.0, buffers(1, &[1, 7, 33, 1000, 3 * 1024 + 5]));
        }
        let bf16_spec = OptimizerSpec::adamw(0.1).with_state(StatePrecision::Bf16);
        let whole = run(bf16_spec, usize::MAX, update_slices_bf16);
        for chunk in [1, 3, 64, 1000, CHUNK] {
            let pieces = run(bf16_spec, chunk, update_slices_bf16);
            assert_eq!(pieces, whole, "bf16 moments with chunks of {chunk}");
        }
    }
}
