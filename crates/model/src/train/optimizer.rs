//! Optimizers over fp32 master weights: AdamW (decoupled weight decay) and SGD with optional
//! momentum. State tensors mirror the parameters by name, so they are saved and restored with
//! the same names as the weights.
//!
//! Norm gains (every 1-D tensor) are never decayed: shrinking an RMSNorm gain towards 0 fights
//! the normalisation instead of regularising anything (ane-reference §6.9 does the same).

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::{ModelError, Result};
use crate::params::{Params, Tensor};

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

/// An optimizer and its state: one buffer per state name per parameter, plus the update count.
#[derive(Clone, Debug, PartialEq)]
pub struct Optimizer {
    spec: OptimizerSpec,
    /// `state[k]` holds state `spec.state_names()[k]` for every parameter.
    state: Vec<Params>,
    /// Updates applied so far (Adam's bias correction uses it).
    updates: u64,
}

impl Optimizer {
    /// Fresh state (zeros) for parameters shaped like `params`.
    pub fn new(spec: OptimizerSpec, params: &Params) -> Self {
        let zeros = || {
            let mut p = params.clone();
            p.iter_mut()
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

    /// Applies one update with learning rate `lr` from gradients `grads` (already unscaled,
    /// averaged and clipped). Cost: a few flops per parameter, one pass over each buffer;
    /// tensors are updated in parallel, each element independently, so the result does not
    /// depend on the thread count.
    pub fn step(&mut self, params: &mut Params, grads: &Params, lr: f32) {
        self.updates += 1;
        let t = self.updates as i32;
        let spec = self.spec;
        let mut states: Vec<_> = self
            .state
            .iter_mut()
            .map(|s| s.iter_mut().into_iter())
            .collect();
        // One job per parameter tensor: the weights, the gradient and the state buffers.
        let jobs: Vec<(&mut Tensor, &Tensor, Vec<&mut Tensor>)> = params
            .iter_mut()
            .into_iter()
            .zip(grads.iter())
            .map(|((_, w), (_, g))| {
                let state = states
                    .iter_mut()
                    .filter_map(|s| s.next().map(|(_, t)| t))
                    .collect();
                (w, g, state)
            })
            .collect();
        jobs.into_par_iter()
            .for_each(|(w, g, mut state)| update_tensor(spec, t, lr, w, g, &mut state));
    }

    /// The state tensors under saved names `<state>.<parameter name>`, e.g.
    /// `exp_avg.model.norm.weight`.
    pub fn named_state(&self) -> Vec<(String, &Tensor)> {
        let mut out = Vec::new();
        for (prefix, state) in self.spec.state_names().iter().zip(&self.state) {
            for (name, t) in state.iter() {
                out.push((format!("{prefix}.{name}"), t));
            }
        }
        out
    }

    /// Rebuilds an optimizer from saved state: `read(name, dst)` must fill `dst` with the tensor
    /// saved as `name` (see [`Optimizer::named_state`]) or fail naming it.
    pub fn restore(
        spec: OptimizerSpec,
        params: &Params,
        updates: u64,
        mut read: impl FnMut(&str, &mut Tensor) -> Result<()>,
    ) -> Result<Self> {
        let mut opt = Optimizer::new(spec, params);
        opt.updates = updates;
        for (prefix, state) in spec.state_names().iter().zip(&mut opt.state) {
            for (name, t) in state.iter_mut() {
                read(&format!("{prefix}.{name}"), t)?;
            }
        }
        Ok(opt)
    }
}

/// Updates one tensor `w` from its gradient `g` and state buffers (`[m, v]` for AdamW,
/// `[momentum]` or `[]` for SGD) at update number `t`. Norm gains (1-D) are not decayed.
fn update_tensor(
    spec: OptimizerSpec,
    t: i32,
    lr: f32,
    w: &mut Tensor,
    g: &Tensor,
    state: &mut [&mut Tensor],
) {
    let decays = w.shape().len() > 1;
    let (w, g) = (w.data_mut(), g.data());
    match (spec, state) {
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
            let c1 = 1.0 - beta1.powi(t);
            let c2 = 1.0 - beta2.powi(t);
            let moments = m.data_mut().iter_mut().zip(v.data_mut());
            for ((w, &g), (m, v)) in w.iter_mut().zip(g).zip(moments) {
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
            for ((w, &g), b) in w.iter_mut().zip(g).zip(b.data_mut()) {
                *b = momentum * *b + g;
                *w -= lr * (*b + wd * *w);
            }
        }
        (OptimizerSpec::Sgd { weight_decay, .. }, _) => {
            let wd = if decays { weight_decay } else { 0.0 };
            for (w, &g) in w.iter_mut().zip(g) {
                *w -= lr * (g + wd * *w);
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
