//! Validation of the parameters and tokens a caller hands the device engine, without
//! allocating, so it can run on every step.

use crate::config::ModelConfig;
use crate::error::{ModelError, Result};
use crate::lora::Adapter;
use crate::params::{Linear, Params, TensorView};

/// Fails unless every token is inside the vocabulary.
pub(super) fn check_tokens(row: &[u32], vocab: usize, b: usize) -> Result<()> {
    match row.iter().find(|&&t| t as usize >= vocab) {
        Some(bad) => Err(ModelError::Input(format!(
            "row {b} holds token id {bad}, outside the vocabulary of {vocab} tokens; use the tokenizer that matches the model"
        ))),
        None => Ok(()),
    }
}

/// A cheap shape check (no allocation) that `p` fits `c`: the engine indexes by these shapes.
pub(super) fn check_params(c: &ModelConfig, p: &Params, what: &str) -> Result<()> {
    let shape_is = |name: &str, t: TensorView, shape: &[usize]| -> Result<()> {
        if t.shape() == shape {
            Ok(())
        } else {
            Err(ModelError::ShapeMismatch {
                name: format!("{what}: {name}"),
                expected: shape.to_vec(),
                found: t.shape().to_vec(),
            })
        }
    };
    let (d, v) = (c.dim, c.vocab_size);
    shape_is("model.embed_tokens.weight", p.embed_tokens.view(), &[v, d])?;
    shape_is("model.norm.weight", p.norm.view(), &[d])?;
    if p.lm_head.is_some() == c.tied_embeddings || p.layers.len() != c.n_layers {
        return Err(ModelError::Config(format!(
            "{what} have {} layers and {} lm_head, but the config has {} layers and tied_embeddings = {}",
            p.layers.len(),
            if p.lm_head.is_some() { "an" } else { "no" },
            c.n_layers,
            c.tied_embeddings
        )));
    }
    if let Some(t) = &p.lm_head {
        shape_is("lm_head.weight", t.view(), &[v, d])?;
    }
    for l in &p.layers {
        shape_is("input_layernorm", l.input_layernorm.view(), &[d])?;
        shape_is(
            "post_attention_layernorm",
            l.post_attention_layernorm.view(),
            &[d],
        )?;
        for linear in Linear::ALL {
            let (out, inp) = linear.shape(c);
            shape_is(linear.name(), linear.get(l), &[out, inp])?;
        }
        match (&l.q_norm, &l.k_norm, c.qk_norm) {
            (Some(qn), Some(kn), true) => {
                shape_is("q_norm", qn.view(), &[c.head_dim])?;
                shape_is("k_norm", kn.view(), &[c.head_dim])?;
            }
            (None, None, false) => {}
            _ => {
                return Err(ModelError::Config(format!(
                    "{what}: q_norm/k_norm presence does not match qk_norm = {}",
                    c.qk_norm
                )))
            }
        }
    }
    Ok(())
}

/// Fails unless `adapter` was made for a model shaped like `c` (the engine indexes by it).
pub(super) fn check_adapter(c: &ModelConfig, adapter: &Adapter) -> Result<()> {
    if adapter.n_layers() != c.n_layers {
        return Err(ModelError::Config(format!(
            "the adapter was made for a base with {} layers but this model has {}; pass the base model it was trained on",
            adapter.n_layers(),
            c.n_layers
        )));
    }
    for ((layer, target), pair) in adapter.modules() {
        let (out, inp) = target.shape(c);
        if (pair.d_out(), pair.d_in()) != (out, inp) {
            return Err(ModelError::ShapeMismatch {
                name: format!("adapter pair of layer {layer} {target}"),
                expected: vec![out, inp],
                found: vec![pair.d_out(), pair.d_in()],
            });
        }
    }
    Ok(())
}
