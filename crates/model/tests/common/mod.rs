//! Helpers shared by the model crate's test binaries. Each binary uses a subset.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

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
