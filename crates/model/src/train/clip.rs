//! Gradient clipping by global L2 norm over every parameter.

use rayon::prelude::*;

use crate::params::ParamSet;

/// The L2 norm of all gradients taken together, summed in f64 so millions of squares lose
/// nothing; infinite or NaN if any gradient is. Cost: one pass over the gradients.
///
/// Tensors are summed in parallel but each sequentially, and the per-tensor sums are added in
/// parameter order: a fixed order, so the norm (and hence clipping) is bit-reproducible, which
/// resuming bit-identically needs.
pub fn global_norm(grads: &impl ParamSet) -> f64 {
    let per_tensor: Vec<f64> = grads
        .tensors()
        .par_iter()
        .map(|(_, t)| t.data().iter().map(|&g| (g as f64) * (g as f64)).sum())
        .collect();
    per_tensor.iter().sum::<f64>().sqrt()
}

/// Multiplies every gradient by `factor` (unscaling, averaging over micro-batches, clipping).
pub fn scale_grads(grads: &mut impl ParamSet, factor: f32) {
    grads
        .tensors_mut()
        .into_par_iter()
        .for_each(|(_, mut t)| t.data_mut().iter_mut().for_each(|g| *g *= factor));
}

/// Scales the gradients so their global norm is at most `max_norm` and returns the norm before
/// clipping. A finite norm at or below `max_norm` leaves them untouched.
pub fn clip_global_norm(grads: &mut impl ParamSet, max_norm: f32) -> f64 {
    let norm = global_norm(grads);
    if norm.is_finite() && norm > max_norm as f64 {
        scale_grads(grads, (max_norm as f64 / norm) as f32);
    }
    norm
}
