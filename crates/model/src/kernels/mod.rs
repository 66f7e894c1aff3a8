//! The transformer training kernels, written as MIL programs with the builder.
//!
//! Tensors cross the device boundary as `[1, C, 1, S]` (fp16 declared), channel-major, one
//! sequence of `S` tokens per run. Weights are packed into the input's spatial axis
//! ([`matmul`]), so one compile per config serves every layer and every optimizer step.
//! Notation: D dim, Q = heads·head_dim, KV = kv_heads·head_dim, H hidden.
//!
//! | kernel | input | output |
//! |---|---|---|
//! | `qkv_fwd` | `[1, D, 1, S+Q+2KV]`, `M = [Wq; Wk; Wv]ᵀ` | `[1, Q+2KV, 1, S]` q, k, v |
//! | `attention_fwd` | `[1, Q+2KV, 1, S]`, q pre-scaled by `head_dim^-½` | `[1, Q, 1, S]` |
//! | `wo_fwd` | `[1, Q, 1, S+D]`, `M = Woᵀ` | `[1, D, 1, S]` |
//! | `ffn_up_fwd` | `[1, D, 1, S+2H]`, `M = [W1; W3]ᵀ` | `[1, 3H, 1, S]` h1, h3, act |
//! | `ffn_down_fwd` | `[1, H, 1, S+D]`, `M = W2ᵀ` | `[1, D, 1, S]` |
//! | `ffn_down_bwd` | `[1, D, 1, S+H]`, `M = W2` | `[1, H, 1, S]` d_act |
//! | `ffn_up_bwd` | `[1, 2H, 1, S+D]`, `M = [W1; W3]` | `[1, D, 1, S]` |
//! | `wo_bwd` | `[1, D, 1, S+Q]`, `M = Wo` | `[1, Q, 1, S]` |
//! | `attention_bwd` | `[1, 2Q+2KV, 1, S]` q, k, v, d_out | `[1, Q+2KV, 1, S]` dq, dk, dv |
//! | `qkv_bwd` | `[1, Q+2KV, 1, S+D]`, `M = [Wq; Wk; Wv]` | `[1, D, 1, S]` |

mod attention;
mod forms;
mod matmul;
mod stage;

pub use attention::{attention_bwd, attention_fwd, causal_mask, MASK_VALUE};
pub use forms::{KernelForms, MatmulForm, RowSumForm};
pub use matmul::{dynamic_matmul, ffn_up_fwd, INPUT, OUTPUT};
pub(crate) use matmul::{dynamic_matmul_into, swiglu_into, SWAP_LAST};
pub(crate) use stage::device_error;
pub use stage::{share_weights, stage_weights};

use anetrain_device::SurfacePolicy;
use anetrain_mil::Bundle;

use crate::config::ModelConfig;
use crate::error::{ModelError, Result};

/// One training kernel of a config: what it is called and its program with weights.
#[derive(Clone, Debug, PartialEq)]
pub struct NamedKernel {
    /// The kernel's role, e.g. `qkv_fwd` (see [`Role::name`]).
    pub name: &'static str,
    /// The MIL program and its BLOBFILE weights.
    pub bundle: Bundle,
}

/// The job of each training kernel in a layer's forward and backward pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    QkvFwd,
    AttentionFwd,
    WoFwd,
    FfnUpFwd,
    FfnDownFwd,
    FfnDownBwd,
    FfnUpBwd,
    WoBwd,
    AttentionBwd,
    QkvBwd,
}

impl Role {
    /// Every role, in the order a training step first runs them.
    pub const ALL: [Role; 10] = [
        Role::QkvFwd,
        Role::AttentionFwd,
        Role::WoFwd,
        Role::FfnUpFwd,
        Role::FfnDownFwd,
        Role::FfnDownBwd,
        Role::FfnUpBwd,
        Role::WoBwd,
        Role::AttentionBwd,
        Role::QkvBwd,
    ];

    /// The kernel's name, as the doctor and error messages print it.
    pub fn name(self) -> &'static str {
        match self {
            Role::QkvFwd => "qkv_fwd",
            Role::AttentionFwd => "attention_fwd",
            Role::WoFwd => "wo_fwd",
            Role::FfnUpFwd => "ffn_up_fwd",
            Role::FfnDownFwd => "ffn_down_fwd",
            Role::FfnDownBwd => "ffn_down_bwd",
            Role::FfnUpBwd => "ffn_up_bwd",
            Role::WoBwd => "wo_bwd",
            Role::AttentionBwd => "attention_bwd",
            Role::QkvBwd => "qkv_bwd",
        }
    }

    /// `(ic, oc)` of a weight-bearing kernel's dynamic matmul, `None` for attention (which
    /// carries no weights and needs no per-layer copy).
    pub fn matmul_dims(self, c: &ModelConfig) -> Option<(usize, usize)> {
        let (d, h, qkv) = (c.dim, c.hidden_dim, c.q_dim() + 2 * c.kv_dim());
        match self {
            Role::QkvFwd => Some((d, qkv)),
            Role::WoFwd => Some((c.q_dim(), d)),
            Role::FfnUpFwd => Some((d, 2 * h)),
            Role::FfnDownFwd => Some((h, d)),
            Role::FfnDownBwd => Some((d, h)),
            Role::FfnUpBwd => Some((2 * h, d)),
            Role::WoBwd => Some((d, c.q_dim())),
            Role::QkvBwd => Some((qkv, d)),
            Role::AttentionFwd | Role::AttentionBwd => None,
        }
    }

    /// Builds the kernel for `config` at sequence length `seq` in `forms`.
    pub fn build(self, config: &ModelConfig, seq: usize, forms: KernelForms) -> Result<Bundle> {
        match (self, self.matmul_dims(config)) {
            (Role::AttentionFwd, _) => attention_fwd(config, seq),
            (Role::AttentionBwd, _) => attention_bwd(config, seq, forms),
            (Role::FfnUpFwd, _) => ffn_up_fwd(config.dim, config.hidden_dim, seq, forms),
            (_, Some((ic, oc))) => dynamic_matmul(ic, oc, seq, forms),
            (_, None) => Err(ModelError::Config(format!(
                "kernel `{}` has no matmul dimensions",
                self.name()
            ))),
        }
    }
}

/// Every training kernel for `config` at sequence length `seq` in `forms`, in [`Role::ALL`]
/// order: what `anetrain doctor` compiles on two devices and the constraint tests check.
pub fn all(config: &ModelConfig, seq: usize, forms: KernelForms) -> Result<Vec<NamedKernel>> {
    config.validate()?;
    if seq == 0 {
        return Err(ModelError::Config(
            "the kernel sequence length is 0; pass the training seq (e.g. 256)".into(),
        ));
    }
    Role::ALL
        .iter()
        .map(|&role| {
            Ok(NamedKernel {
                name: role.name(),
                bundle: role.build(config, seq, forms)?,
            })
        })
        .collect()
}

/// Every kernel a config sends to the ANE at training length `seq`: the training kernels in
/// [`Role::ALL`] order, then the decode kernels of the ANE's plan (32 wide, one cache for
/// `seq` tokens). What `anetrain mil dump` writes and `anetrain doctor` compares.
pub fn training_and_decode(
    config: &ModelConfig,
    seq: usize,
    forms: KernelForms,
) -> Result<Vec<NamedKernel>> {
    let mut list = all(config, seq, forms)?;
    let plan = crate::generate::DecodePlan::new(config, seq, Some(SurfacePolicy::default()))?;
    let decode = crate::generate::DecodeKernels::build(
        config,
        &plan,
        plan.decode_width,
        plan.cache_len(),
        forms,
    )?;
    list.extend(
        decode
            .named()
            .into_iter()
            .map(|(name, bundle)| NamedKernel {
                name,
                bundle: bundle.clone(),
            }),
    );
    Ok(list)
}
