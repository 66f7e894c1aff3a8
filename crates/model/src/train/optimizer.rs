//! Optimizers over fp32 master weights: AdamW (decoupled weight decay) and SGD with optional
//! momentum. State tensors mirror the parameters by name, so they are saved and restored with
//! the same names as the weights.
//!
//! Norm gains (every 1-D tensor) are never decayed: shrinking an RMSNorm gain towards 0 fights
//! the normalisation instead of regularising anything (ane-reference §6.9 does the same).

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::{ModelError, Result};
use crate::params::{ParamSet, Params, Tensor};

/// Which optimizer, with its hyperparameters; saved in checkpoint metadata.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum OptimizerSpec {
    /// Adam with bias correction and decoupled decay: `w -= lr·(m̂/(√v̂ + ε) + wd·w)`.
    Adamw {
        /// First-moment decay.
        beta1: f32,
        /// Second-moment decay.
        beta2: f32,
        /// Added to `√v̂` so steps stay finite where the gradient has been zero.
        eps: f32,
        /// Decoupled weight decay on matrices and embeddings.
        weight_decay: f32,
    },
    /// Plain SGD, `w -= lr·(b + wd·w)` with `b = μ·b + g` (or `b = g` when `μ = 0`).
    Sgd {
        /// Momentum coefficient `μ`; 0 disables the buffer.
        momentum: f32,
        /// Decoupled weight decay on matrices and embeddings.
        weight_decay: f32,
    },
}

impl OptimizerSpec {
    /// AdamW with the defaults of ane-reference §6.9: β1 0.9, β2 0.95, ε 1e-8.
    pub fn adamw(weight_decay: f32) -> Self {
        OptimizerSpec::Adamw {
            beta1: 0.9,
            beta2: 0.95,
            eps: 1e-8,
            weight_decay,
        }
    }

    /// SGD with momentum 0.9 (plain SGD barely moves a transformer in a few hundred steps).
    pub fn sgd(weight_decay: f32) -> Self {
        OptimizerSpec::Sgd {
            momentum: 0.9,
            weight_decay,
        }
    }

    /// Names of the state tensors kept per parameter, as prefixes of the saved names.
    fn state_names(&self) -> &'static [&'static str] {
        match self {
            OptimizerSpec::Adamw { .. } => &["exp_avg", "exp_avg_sq"],
            OptimizerSpec::Sgd { momentum, .. } if *momentum != 0.0 => &["momentum"],
            OptimizerSpec::Sgd { .. } => &[],
        }
    }
}

/// An optimizer and its state over a parameter set `P` (a whole model by default, or an
/// adapter): one buffer per state name per parameter, plus the update count.
#[derive(Clone, Debug, PartialEq)]
pub struct Optimizer<P: ParamSet = Params> {
    spec: OptimizerSpec,
    /// `state[k]` holds state `spec.state_names()[k]` for every parameter.
    state: Vec<P>,
    /// Updates applied so far (Adam's bias correction uses it).
    updates: u64,
}

impl<P: ParamSet> Optimizer<P> {
    /// Fresh state (zeros) for parameters shaped like `params`.
    pub fn new(spec: OptimizerSpec, params: &P) -> Self {
        let zeros = || {
            let mut p = params.clone();
            p.tensors_mut()
                .into_iter()
                .for_each(|(_, t)| t.data_mut().fill(0.0));
            p
        };
        Optimizer {
            spec,
            state: spec.state_names().iter().map(|_| zeros()).collect(),
            updates: 0,
        }
    }

    /// The optimizer's kind and hyperparameters.
    pub fn spec(&self) -> OptimizerSpec {
        self.spec
    }

    /// Updates applied so far.
    pub fn updates(&self) -> u64 {
        self.updates
    }

    /// Applies one update with learning rate `lr` from the gradients `grad_scale · grads`:
    /// unscaling and clipping fold into `grad_scale`, so the gradients are read once here
    /// instead of being rewritten by separate passes first. Cost: a few flops per parameter,
    /// one pass over each buffer. Every tensor is cut into [`CHUNK`]-element pieces updated in
    /// parallel, so one large tensor (the embedding) uses every core; each element is updated
    /// on its own, so the result depends neither on the thread count nor on the chunking.
    pub fn step(&mut self, params: &mut P, grads: &P, lr: f32, grad_scale: f32) {
        self.updates += 1;
        let rule = Rule::new(self.spec, self.updates, lr, grad_scale);
        let mut states: Vec<_> = self
            .state
            .iter_mut()
            .map(|s| s.tensors_mut().into_iter())
            .collect();
        let tensors = params
            .tensors_mut()
            .into_iter()
            .zip(grads.tensors())
            .map(|((_, w), (_, g))| {
                let state = states
                    .iter_mut()
                    .filter_map(|s| s.next().map(|(_, t)| t.data_mut()))
                    .collect();
                TensorSlices {
                    decays: w.shape().len() > 1,
                    w: w.data_mut(),
                    g: g.data(),
                    state,
                }
            })
            .collect();
        update_chunked(&rule, tensors, CHUNK);
    }

    /// The state tensors under saved names `<state>.<parameter name>`, e.g.
    /// `exp_avg.model.norm.weight`.
    pub fn named_state(&self) -> Vec<(String, &Tensor)> {
        let mut out = Vec::new();
        for (prefix, state) in self.spec.state_names().iter().zip(&self.state) {
            for (name, t) in state.tensors() {
                out.push((format!("{prefix}.{name}"), t));
            }
        }
        out
    }

    /// Rebuilds an optimizer from saved state: `read(name, dst)` must fill `dst` with the tensor
    /// saved as `name` (see [`Optimizer::named_state`]) or fail naming it.
    pub fn restore(
        spec: OptimizerSpec,
        params: &P,
        updates: u64,
        mut read: impl FnMut(&str, &mut Tensor) -> Result<()>,
    ) -> Result<Self> {
        let mut opt = Optimizer::new(spec, params);
        opt.updates = updates;
        for (prefix, state) in spec.state_names().iter().zip(&mut opt.state) {
            for (name, t) in state.tensors_mut() {
                read(&format!("{prefix}.{name}"), t)?;
            }
        }
        Ok(opt)
    }
}

/// Elements per parallel job: big enough that scheduling costs nothing next to the update,
/// small enough that a 9M-element embedding spreads over every core.
const CHUNK: usize = 1 << 15;

/// One step's arithmetic: the spec with the step's learning rate and bias corrections, worked
/// out once per step so every chunk uses the very same values.
struct Rule {
    spec: OptimizerSpec,
    lr: f32,
    /// Every gradient is multiplied by this before use (unscaling and clipping).
    grad_scale: f32,
    /// Adam's bias corrections `1 - β^t` (unused by SGD).
    c1: f32,
    c2: f32,
}

impl Rule {
    fn new(spec: OptimizerSpec, updates: u64, lr: f32, grad_scale: f32) -> Rule {
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

/// One parameter tensor's buffers: weights, gradient and state (`[m, v]` for AdamW,
/// `[momentum]` or `[]` for SGD), and whether weight decay applies (not to 1-D norm gains).
struct TensorSlices<'a> {
    decays: bool,
    w: &'a mut [f32],
    g: &'a [f32],
    state: Vec<&'a mut [f32]>,
}

impl<'a> TensorSlices<'a> {
    /// Cuts the buffers into aligned pieces of at most `chunk` elements.
    fn split(self, chunk: usize, out: &mut Vec<TensorSlices<'a>>) {
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

/// Applies `rule` to every element of `tensors`, in parallel pieces of `chunk` elements.
fn update_chunked(rule: &Rule, tensors: Vec<TensorSlices<'_>>, chunk: usize) {
    let mut pieces = Vec::new();
    for t in tensors {
        t.split(chunk, &mut pieces);
    }
    pieces
        .into_par_iter()
        .for_each(|mut p| update_slices(rule, p.decays, p.w, p.g, &mut p.state));
}

/// Updates weights `w` from gradient `g` and state buffers (`[m, v]` for AdamW, `[momentum]`
/// or `[]` for SGD), element by element.
fn update_slices(rule: &Rule, decays: bool, w: &mut [f32], g: &[f32], state: &mut [&mut [f32]]) {
    let (lr, s) = (rule.lr, rule.grad_scale);
    match (rule.spec, state) {
        (
            OptimizerSpec::Adamw {
                beta1,
                beta2,
                eps,
                weight_decay,
            },
            [m, v],
        ) => {
            let wd = if decays { weight_decay } else { 0.0 };
            let (c1, c2) = (rule.c1, rule.c2);
            let moments = m.iter_mut().zip(v.iter_mut());
            for ((w, &g), (m, v)) in w.iter_mut().zip(g).zip(moments) {
                let g = g * s;
                *m = beta1 * *m + (1.0 - beta1) * g;
                *v = beta2 * *v + (1.0 - beta2) * g * g;
                let m_hat = *m / c1;
                let v_hat = *v / c2;
                *w -= lr * (m_hat / (v_hat.sqrt() + eps) + wd * *w);
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

/// Parses `--optimizer`.
pub fn parse_optimizer(name: &str, weight_decay: f32) -> Result<OptimizerSpec> {
    match name {
        "adamw" => Ok(OptimizerSpec::adamw(weight_decay)),
        "sgd" => Ok(OptimizerSpec::sgd(weight_decay)),
        other => Err(ModelError::Options(format!(
            "unknown optimizer `{other}`; choose adamw or sgd"
        ))),
    }
}

#[cfg(test)]
mod tests {
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

    /// Runs three steps of `spec` over the buffers with pieces of `chunk` elements; returns
    /// weights and state.
    fn run(spec: OptimizerSpec, chunk: usize) -> (Vec<Vec<f32>>, Vec<Vec<Vec<f32>>>) {
        let sizes = [1, 7, 33, 1000, 3 * 1024 + 5];
        let mut w = buffers(1, &sizes);
        let mut state: Vec<Vec<Vec<f32>>> = spec
            .state_names()
            .iter()
            .map(|_| sizes.iter().map(|&n| vec![0.0; n]).collect())
            .collect();
        for step in 1..=3u64 {
            let g = buffers(10 + step, &sizes);
            let rule = Rule::new(spec, step, 1e-2, 0.75);
            let mut per_tensor: Vec<Vec<&mut [f32]>> = sizes.iter().map(|_| Vec::new()).collect();
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
            update_chunked(&rule, tensors, chunk);
        }
        (w, state)
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
            let whole = run(spec, usize::MAX);
            for chunk in [1, 3, 64, 1000, CHUNK] {
                assert_eq!(run(spec, chunk), whole, "{spec:?} with chunks of {chunk}");
            }
            assert_ne!(whole.0, buffers(1, &[1, 7, 33, 1000, 3 * 1024 + 5]));
        }
    }
}
