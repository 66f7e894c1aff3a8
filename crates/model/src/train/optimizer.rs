//! Optimizers over fp32 master weights: AdamW (decoupled weight decay) and SGD with optional
//! momentum. State tensors mirror the parameters by name, so they are saved and restored with
//! the same names as the weights.
//!
//! Norm gains (every 1-D tensor) are never decayed: shrinking an RMSNorm gain towards 0 fights
//! the normalisation instead of regularising anything (ane-reference §6.9 does the same).
//!
//! AdamW's moments may be kept in bf16 ([`StatePrecision::Bf16`]): 12 instead of 16 bytes per
//! parameter with the fp32 weights and gradients. Each update loads them, computes in f32 as
//! the fp32 path does, uses the f32 results for the weight, and stores them rounded to nearest
//! even. bf16 has fp32's exponent, so the tiny non-negative `v` neither underflows nor needs
//! rescaling; what it lacks is mantissa (8 bits): a decay `β` whose change `(1 - β)·x` is
//! below half a bf16 step would round back to `x` and freeze the moment, so `1 - β` must be at
//! least 2⁻⁸ (β ≤ 0.996; this project's 0.9 and 0.95 are far from it).
//!
//! The gradient cannot be folded into the optimizer (updating each weight as its gradient is
//! produced, never holding the whole gradient): clipping needs the global norm of the whole
//! gradient before any weight moves, accumulation sums several micro-batches into it, and the
//! loss scaler skips the whole step when any element overflowed. All three are on by default.

use half::bf16;
use serde::{Deserialize, Serialize};

use crate::error::{ModelError, Result};
use crate::hf::{SafetensorsFile, StoredTensor, StoredValues};
use crate::params::{ParamSet, Params};

mod update;

use update::{update_chunked, update_slices, update_slices_bf16, Rule, TensorSlices, CHUNK};

/// How AdamW's two moments are stored: the update itself is always computed in f32.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StatePrecision {
    /// 4 bytes per moment per parameter (16 B/param with weights and gradients).
    #[default]
    Fp32,
    /// 2 bytes per moment, rounded to nearest even on every store (12 B/param).
    Bf16,
}

impl StatePrecision {
    /// Parses `--optimizer-state` / `optimizer_state`.
    pub fn parse(name: &str) -> Result<Self> {
        match name {
            "fp32" => Ok(StatePrecision::Fp32),
            "bf16" => Ok(StatePrecision::Bf16),
            other => Err(ModelError::Options(format!(
                "unknown optimizer state `{other}` (--optimizer-state, optimizer_state in C and Python); choose fp32 or bf16"
            ))),
        }
    }

    /// The name `parse` reads.
    pub fn name(self) -> &'static str {
        match self {
            StatePrecision::Fp32 => "fp32",
            StatePrecision::Bf16 => "bf16",
        }
    }
}

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
        /// How `m` and `v` are stored (runs saved before it existed kept fp32).
        #[serde(default)]
        state: StatePrecision,
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
            state: StatePrecision::Fp32,
        }
    }

    /// SGD with momentum 0.9 (plain SGD barely moves a transformer in a few hundred steps).
    pub fn sgd(weight_decay: f32) -> Self {
        OptimizerSpec::Sgd {
            momentum: 0.9,
            weight_decay,
        }
    }

    /// How the state tensors are stored (SGD's momentum is always fp32).
    pub fn state_precision(&self) -> StatePrecision {
        match self {
            OptimizerSpec::Adamw { state, .. } => *state,
            OptimizerSpec::Sgd { .. } => StatePrecision::Fp32,
        }
    }

    /// The same optimizer with AdamW's moments stored in `state` (SGD unchanged: its momentum
    /// is always fp32).
    pub fn with_state(self, state: StatePrecision) -> Self {
        match self {
            OptimizerSpec::Adamw {
                beta1,
                beta2,
                eps,
                weight_decay,
                ..
            } => OptimizerSpec::Adamw {
                beta1,
                beta2,
                eps,
                weight_decay,
                state,
            },
            sgd @ OptimizerSpec::Sgd { .. } => sgd,
        }
    }

    /// Bytes of optimizer state per parameter.
    pub fn state_bytes_per_param(&self) -> u64 {
        let per_value = match self.state_precision() {
            StatePrecision::Fp32 => 4,
            StatePrecision::Bf16 => 2,
        };
        per_value * self.state_names().len() as u64
    }

    /// Fails, naming the decay, when bf16 moments could not follow it: a change of
    /// `(1 - β)·x` below half a bf16 step rounds back to `x` (see the module docs).
    pub fn check_state_precision(&self) -> Result<()> {
        if let OptimizerSpec::Adamw {
            beta1,
            beta2,
            state: StatePrecision::Bf16,
            ..
        } = self
        {
            for (name, beta) in [("beta1", beta1), ("beta2", beta2)] {
                if 1.0 - beta < BF16_MIN_DECAY {
                    return Err(ModelError::Options(format!(
                        "AdamW {name} {beta} decays its moment by less than half a bf16 step, so bf16 moments would stop changing; use --optimizer-state fp32 or a {name} of at most {}",
                        1.0 - BF16_MIN_DECAY
                    )));
                }
            }
        }
        Ok(())
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

/// The smallest `1 - β` bf16 moments follow: 2⁻⁸, half the relative step at the bottom of a
/// binade (8 significant bits).
const BF16_MIN_DECAY: f32 = 1.0 / 256.0;

/// An optimizer and its state over a parameter set `P` (a whole model by default, or an
/// adapter): one buffer per state name per parameter, plus the update count.
#[derive(Clone, Debug, PartialEq)]
pub struct Optimizer<P: ParamSet = Params> {
    spec: OptimizerSpec,
    state: State<P>,
    /// Updates applied so far (Adam's bias correction uses it).
    updates: u64,
}

/// The state buffers in the spec's precision; `[k]` holds state `spec.state_names()[k]`.
#[derive(Clone, Debug, PartialEq)]
enum State<P> {
    /// fp32, shaped like the parameters.
    F32(Vec<P>),
    /// bf16: `buffers[k][i]` for the `i`-th parameter tensor of `tensors` (names and shapes
    /// in [`ParamSet::tensors`] order).
    Bf16 {
        tensors: Vec<(String, Vec<usize>)>,
        buffers: Vec<Vec<Vec<bf16>>>,
    },
}

impl<P: ParamSet> Optimizer<P> {
    /// Fresh state (zeros) for parameters shaped like `params`.
    pub fn new(spec: OptimizerSpec, params: &P) -> Self {
        let names = spec.state_names();
        let state = match spec.state_precision() {
            StatePrecision::Fp32 => {
                let zeros = || {
                    let mut p = params.clone();
                    p.tensors_mut()
                        .into_iter()
                        .for_each(|(_, mut t)| t.data_mut().fill(0.0));
                    p
                };
                State::F32(names.iter().map(|_| zeros()).collect())
            }
            StatePrecision::Bf16 => {
                let tensors: Vec<(String, Vec<usize>)> = params
                    .tensors()
                    .into_iter()
                    .map(|(name, t)| (name, t.shape().to_vec()))
                    .collect();
                let zeros = || {
                    tensors
                        .iter()
                        .map(|(_, shape)| vec![bf16::ZERO; shape.iter().product()])
                        .collect()
                };
                State::Bf16 {
                    buffers: names.iter().map(|_| zeros()).collect(),
                    tensors,
                }
            }
        };
        Optimizer {
            spec,
            state,
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
        match &mut self.state {
            State::F32(state) => {
                let mut states: Vec<_> = state
                    .iter_mut()
                    .map(|s| s.tensors_mut().into_iter().map(|(_, t)| t.into_data()))
                    .collect();
                let tensors = pair_up(params, grads, &mut states);
                update_chunked(&rule, tensors, CHUNK, update_slices);
            }
            State::Bf16 { buffers, .. } => {
                let mut states: Vec<_> = buffers
                    .iter_mut()
                    .map(|s| s.iter_mut().map(Vec::as_mut_slice))
                    .collect();
                let tensors = pair_up(params, grads, &mut states);
                update_chunked(&rule, tensors, CHUNK, update_slices_bf16);
            }
        }
    }

    /// The state tensors under saved names `<state>.<parameter name>`, e.g.
    /// `exp_avg.model.norm.weight`, in their stored precision.
    pub fn named_state(&self) -> Vec<StoredTensor<'_>> {
        let mut out = Vec::new();
        let prefixes = self.spec.state_names().iter();
        match &self.state {
            State::F32(state) => {
                for (prefix, state) in prefixes.zip(state) {
                    for (name, t) in state.tensors() {
                        let values = StoredValues::F32(t.data());
                        out.push((format!("{prefix}.{name}"), t.shape(), values));
                    }
                }
            }
            State::Bf16 { tensors, buffers } => {
                for (prefix, state) in prefixes.zip(buffers) {
                    for ((name, shape), data) in tensors.iter().zip(state) {
                        let values = StoredValues::Bf16(data);
                        out.push((format!("{prefix}.{name}"), shape.as_slice(), values));
                    }
                }
            }
        }
        out
    }

    /// Rebuilds an optimizer from state saved in `file` under the names of
    /// [`Optimizer::named_state`], bit for bit in the spec's precision.
    pub fn restore(
        spec: OptimizerSpec,
        params: &P,
        updates: u64,
        file: &SafetensorsFile,
    ) -> Result<Self> {
        let mut opt = Optimizer::new(spec, params);
        opt.updates = updates;
        let prefixes = spec.state_names().iter();
        match &mut opt.state {
            State::F32(state) => {
                for (prefix, state) in prefixes.zip(state) {
                    for (name, mut t) in state.tensors_mut() {
                        file.read_into(&format!("{prefix}.{name}"), &mut t)?;
                    }
                }
            }
            State::Bf16 { tensors, buffers } => {
                for (prefix, state) in prefixes.zip(buffers) {
                    for ((name, shape), data) in tensors.iter().zip(state) {
                        file.read_bf16_into(&format!("{prefix}.{name}"), shape, data)?;
                    }
                }
            }
        }
        Ok(opt)
    }
}

/// Each parameter tensor's weights and gradient with its slice of every state buffer
/// (`states[k]` yields state `k`'s slices in [`ParamSet::tensors`] order).
fn pair_up<'a, P: ParamSet, T: 'a>(
    params: &'a mut P,
    grads: &'a P,
    states: &mut [impl Iterator<Item = &'a mut [T]>],
) -> Vec<TensorSlices<'a, T>> {
    params
        .tensors_mut()
        .into_iter()
        .zip(grads.tensors())
        .map(|((_, w), (_, g))| TensorSlices {
            decays: w.shape().len() > 1,
            w: w.into_data(),
            g: g.data(),
            state: states.iter_mut().filter_map(Iterator::next).collect(),
        })
        .collect()
}

/// Parses `--optimizer` with its decay and state precision; SGD refuses bf16 state (it keeps
/// no moments to store).
pub fn parse_optimizer(
    name: &str,
    weight_decay: f32,
    state: StatePrecision,
) -> Result<OptimizerSpec> {
    match (name, state) {
        ("adamw", state) => Ok(OptimizerSpec::adamw(weight_decay).with_state(state)),
        ("sgd", StatePrecision::Fp32) => Ok(OptimizerSpec::sgd(weight_decay)),
        ("sgd", StatePrecision::Bf16) => Err(ModelError::Options(
            "--optimizer-state bf16 stores AdamW's moments, and SGD has none; use --optimizer \
             adamw or drop --optimizer-state (optimizer_state in C and Python)"
                .into(),
        )),
        (other, _) => Err(ModelError::Options(format!(
            "unknown optimizer `{other}`; choose adamw or sgd"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bf16_moments_are_refused_where_they_could_not_follow_the_decay() {
        let with = |beta2, state| OptimizerSpec::Adamw {
            beta1: 0.9,
            beta2,
            eps: 1e-8,
            weight_decay: 0.1,
            state,
        };
        let bf16 = StatePrecision::Bf16;
        assert!(with(0.95, bf16).check_state_precision().is_ok());
        assert!(with(0.99, bf16).check_state_precision().is_ok());
        let e = with(0.999, bf16)
            .check_state_precision()
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("beta2 0.999") && e.contains("--optimizer-state fp32"),
            "{e}"
        );
        let fp32 = with(0.999, StatePrecision::Fp32);
        assert!(fp32.check_state_precision().is_ok());
    }

    #[test]
    fn sgd_refuses_bf16_state_and_names_the_values() {
        let e = parse_optimizer("sgd", 0.1, StatePrecision::Bf16)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("SGD has none") && e.contains("--optimizer adamw"),
            "{e}"
        );
        let e = StatePrecision::parse("fp16").unwrap_err().to_string();
        assert!(
            e.contains("`fp16`") && e.contains("choose fp32 or bf16"),
            "{e}"
        );
        assert_eq!(
            parse_optimizer("adamw", 0.1, StatePrecision::Bf16)
                .unwrap()
                .state_bytes_per_param(),
            4
        );
    }
}
