//! BLOBFILE weight files (ane-reference §4): a 64-byte file header, then 64-byte-aligned
//! records of a 64-byte header and a payload. MIL references a record by its header's offset.

use std::collections::BTreeMap;

/// The weight files a program references, keyed by the exact BLOBFILE path string
/// (`@model_path/weights/w.bin`), each the whole file's bytes.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct WeightFiles {
    files: BTreeMap<String, Vec<u8>>,
}

impl WeightFiles {
    pub fn new() -> WeightFiles {
        WeightFiles::default()
    }

    /// Adds or replaces the file at `path`.
    pub fn insert(&mut self, path: impl Into<String>, bytes: Vec<u8>) {
        self.files.insert(path.into(), bytes);
    }

    /// The bytes of the file at `path`.
    pub fn get(&self, path: &str) -> Option<&[u8]> {
        self.files.get(path).map(Vec::as_slice)
    }

    /// Every (path, bytes) pair, sorted by path.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.files.iter().map(|(k, v)| (k.as_str(), v.as_slice()))
    }

    pub fn len(&self) -> usize {
        self.files.len()
    }

    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }
}
