//! Helpers shared by the model crate's test binaries. Each binary uses a subset.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use anetrain_data::Batch;
use anetrain_model::config::ModelConfig;
use anetrain_model::engine::Engine;
use anetrain_model::params::Params;

/// `../shared/fixtures` beside the workspace, or None (with the reason printed) when absent.
pub fn fixtures_dir() -> Option<PathBuf> {
    let dir = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/fixtures"
    ));
    if dir.is_dir() {
        Some(dir)
    } else {
        println!("skipping: shared fixtures not found at {}", dir.display());
        None
    }
}

/// `max|a − b| / max|b|`: relative to the tensor's scale, so tiny entries do not dominate.
pub fn rel_err(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "length mismatch");
    let diff = a
        .iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max);
    let scale = b.iter().map(|y| y.abs()).fold(0.0, f32::max);
    diff / scale.max(1e-30)
}

/// A fixture's `tokens.bin`: `batch` rows of uint32 little-endian token ids.
pub fn read_token_rows(path: &Path, batch: usize) -> Vec<Vec<u32>> {
    let bytes = std::fs::read(path).unwrap();
    let ids: Vec<u32> = bytes
        .chunks_exact(4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    ids.chunks_exact(ids.len() / batch)
        .map(<[u32]>::to_vec)
        .collect()
}

/// Checks the gradient `engine` gives for `batch` against central differences (step 1e-2) of
/// its own loss, at the largest-gradient entry of each named tensor, where the difference
/// quotient is well above rounding noise; a relative error of 3% fails.
pub fn check_finite_differences(
    engine: &mut dyn Engine,
    c: &ModelConfig,
    p: &mut Params,
    batch: &Batch,
    names: &[&str],
) {
    let mut g = Params::zeros(c);
    engine.forward_backward(p, batch, 1.0, &mut g).unwrap();
    let h = 1e-2;
    for &name in names {
        let grad = g.get(name).unwrap().data();
        let (i, &analytic) = grad
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.abs().total_cmp(&b.1.abs()))
            .unwrap();
        let mut loss_at = |delta: f32| {
            let mut t = p.iter_mut().into_iter().find(|(n, _)| n == name).unwrap().1;
            t.data_mut()[i] += delta;
            engine.stage(p).unwrap();
            let l = engine.loss(p, batch).unwrap().loss as f64;
            let mut t = p.iter_mut().into_iter().find(|(n, _)| n == name).unwrap().1;
            t.data_mut()[i] -= delta;
            l
        };
        let numeric = (loss_at(h) - loss_at(-h)) / (2.0 * h as f64);
        let err = (numeric - analytic as f64).abs() / (analytic.abs() as f64);
        assert!(
            err < 3e-2,
            "{name}[{i}]: finite difference {numeric} vs gradient {analytic}"
        );
    }
}
