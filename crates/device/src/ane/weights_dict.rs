//! The weights dictionary handed to `_ANEInMemoryModelDescriptor` and the model directory the
//! compiler reads (ane-reference §1.3, §1.4).
//!
//! Every BLOBFILE path in the MIL is `@model_path/<relative>`; the dictionary maps that exact
//! string to `{offset: 0, data: <whole file>}`, and the same bytes are written to
//! `<dir>/<relative>` next to `<dir>/model.mil`. Keys are checked here because they become file
//! paths: a key that escapes the directory or shadows `model.mil` is refused.

use crate::{DeviceError, Result};
use anetrain_mil::WeightFiles;
use std::fs;
use std::path::{Component, Path, PathBuf};

/// The prefix every BLOBFILE path must start with; the compiler substitutes the model directory.
pub const MODEL_PATH_PREFIX: &str = "@model_path/";

/// The file the MIL text is written to inside the model directory.
pub const MIL_FILE: &str = "model.mil";

/// One entry of the weights dictionary and the file that mirrors it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WeightEntry<'a> {
    /// The dictionary key: the exact BLOBFILE path string of the MIL.
    pub key: &'a str,
    /// Where the file goes, relative to the model directory (`weights/w.bin`).
    pub relative_path: PathBuf,
    /// The dictionary's `offset` value. Always 0: the offset that matters is the one in the MIL.
    pub offset: u64,
    /// The whole blob file.
    pub bytes: &'a [u8],
}

/// The weights dictionary entries of `weights`, sorted by key; an error names the first bad key.
pub fn weight_entries(weights: &WeightFiles) -> Result<Vec<WeightEntry<'_>>> {
    weights
        .iter()
        .map(|(key, bytes)| {
            Ok(WeightEntry {
                key,
                relative_path: relative_path(key)?,
                offset: 0,
                bytes,
            })
        })
        .collect()
}

/// Every file of the model directory as (relative path, bytes): `model.mil` first, then each
/// weight file.
pub fn model_dir_files<'a>(
    mil: &'a str,
    weights: &'a WeightFiles,
) -> Result<Vec<(PathBuf, &'a [u8])>> {
    let mut files = vec![(PathBuf::from(MIL_FILE), mil.as_bytes())];
    for entry in weight_entries(weights)? {
        files.push((entry.relative_path, entry.bytes));
    }
    Ok(files)
}

/// The path below the model directory that BLOBFILE key `key` refers to.
pub fn relative_path(key: &str) -> Result<PathBuf> {
    let bad = |why: &str| {
        DeviceError::Layout(format!(
            "weight file key `{key}` {why}; BLOBFILE paths must look like \
             `@model_path/weights/name.bin`"
        ))
    };
    let rest = key
        .strip_prefix(MODEL_PATH_PREFIX)
        .ok_or_else(|| bad("does not start with `@model_path/`"))?;
    if rest.is_empty() || rest.contains('\\') || rest.split('/').any(str::is_empty) {
        return Err(bad("has an empty path component or a backslash"));
    }
    let path = PathBuf::from(rest);
    if !path.components().all(|c| matches!(c, Component::Normal(_))) {
        return Err(bad("contains `..`, `.` or an absolute path"));
    }
    if path == Path::new(MIL_FILE) {
        return Err(bad("would overwrite the program file `model.mil`"));
    }
    Ok(path)
}

/// A model directory owned by one compiled instance, deleted with everything in it when
/// dropped. It is never shared: its name comes from text stamped with an
/// [`instance_id`](crate::ane::cache::instance_id), so another compile never has the same one.
#[derive(Debug)]
pub struct ModelDir {
    path: PathBuf,
}

impl ModelDir {
    /// Creates `path` and writes `files`. Refuses a directory that already exists, because
    /// it belongs to another compile (deleting it would break that model).
    pub fn create(path: PathBuf, files: &[(PathBuf, &[u8])]) -> Result<ModelDir> {
        let io = |what: &str, p: &Path, e: std::io::Error| {
            DeviceError::Runtime(format!(
                "cannot {what} `{}` for the ANE compiler: {e}; check that the temporary \
                 directory is writable",
                p.display()
            ))
        };
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).map_err(|e| io("create", parent, e))?;
        }
        fs::create_dir(&path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                DeviceError::Runtime(format!(
                    "the ANE model directory `{}` already exists and belongs to another \
                     compile, which it is left to; compile again (every compile gets a new \
                     directory)",
                    path.display()
                ))
            } else {
                io("create the model directory", &path, e)
            }
        })?;
        // From here on, an early return drops `dir` and removes what was written.
        let dir = ModelDir { path };
        for (relative, bytes) in files {
            let target = dir.path.join(relative);
            if let Some(parent) = target.parent() {
                fs::create_dir_all(parent).map_err(|e| io("create", parent, e))?;
            }
            fs::write(&target, bytes).map_err(|e| io("write", &target, e))?;
        }
        Ok(dir)
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for ModelDir {
    fn drop(&mut self) {
        // Nothing useful can be done about a failure here; the OS cleans its temp dir eventually.
        let _ = fs::remove_dir_all(&self.path);
    }
}
