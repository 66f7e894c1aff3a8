//! The base model of a LoRA run: where it is and a hash of its weights, recorded in every
//! checkpoint (which holds only the adapter), so resuming or evaluating against another base
//! is an error instead of a silently different model.

use std::path::Path;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::config::ModelConfig;
use crate::error::{ModelError, Result};
use crate::params::Params;
use crate::source::ModelSource;

/// A reference to the frozen base a LoRA run trains on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BaseRef {
    /// The base's path (absolute), as `--init-from` named it.
    pub path: String,
    /// [`content_hash`] of the base's weights.
    pub hash: String,
}

impl BaseRef {
    /// A reference to `params` loaded from `path`.
    pub fn new(path: &Path, params: &Params) -> Result<Self> {
        let abs = std::path::absolute(path).map_err(|e| ModelError::io(path, e))?;
        Ok(BaseRef {
            path: abs.display().to_string(),
            hash: content_hash(params),
        })
    }

    /// Loads the base and checks it is the one recorded: same config as `config` and the same
    /// weights by hash. `what` names the checkpoint for messages.
    pub fn load(&self, config: &ModelConfig, what: &Path) -> Result<Params> {
        let path = Path::new(&self.path);
        if !path.exists() {
            return Err(ModelError::format(
                what,
                format!(
                    "holds a LoRA adapter on the base {}, which no longer exists; put the base model back at that path",
                    self.path
                ),
            ));
        }
        let base = ModelSource::from_path(path)?.load(0)?;
        let diffs = super::checkpoint::config_differences(config, &base.config);
        let found = content_hash(&base.params);
        if !diffs.is_empty() || found != self.hash {
            return Err(ModelError::format(
                what,
                format!(
                    "holds a LoRA adapter trained on the base {} with weights {}, but that path now holds weights {found}{}; restore the original base model there",
                    self.path,
                    self.hash,
                    if diffs.is_empty() { String::new() } else { format!(" ({})", diffs.join(", ")) }
                ),
            ));
        }
        Ok(base.params)
    }

    /// Fails unless `other` names the same base weights (a run continued with `--adapter` or
    /// resumed must keep its base).
    pub fn check_same(&self, other: &BaseRef) -> Result<()> {
        if self.hash == other.hash {
            return Ok(());
        }
        Err(ModelError::Options(format!(
            "the run's adapter belongs to the base {} (weights {}) but the base given is {} (weights {}); pass the original base",
            self.path, self.hash, other.path, other.hash
        )))
    }
}

/// `crc32:xxxxxxxx` over every tensor's name, shape and little-endian f32 values in
/// [`Params::iter`] order: the same weights give the same hash whatever file held them.
pub fn content_hash(params: &Params) -> String {
    let per_tensor: Vec<u32> = params
        .iter()
        .par_iter()
        .map(|(name, t)| {
            let mut h = crc32fast::Hasher::new();
            h.update(name.as_bytes());
            for d in t.shape() {
                h.update(&(*d as u64).to_le_bytes());
            }
            for chunk in t.data().chunks(4096) {
                let bytes: Vec<u8> = chunk.iter().flat_map(|v| v.to_le_bytes()).collect();
                h.update(&bytes);
            }
            h.finalize()
        })
        .collect();
    let mut all = crc32fast::Hasher::new();
    for h in per_tensor {
        all.update(&h.to_le_bytes());
    }
    format!("crc32:{:08x}", all.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::params::Linear;

    #[test]
    fn the_hash_sees_every_value() {
        let c = ModelConfig::preset("tiny").unwrap();
        let mut p = Params::init(&c, 1).unwrap();
        let before = content_hash(&p);
        assert_eq!(before, content_hash(&p.clone()));
        Linear::DownProj.get_mut(&mut p.layers[1]).data_mut()[7] += 1e-6;
        assert_ne!(before, content_hash(&p));
    }
}
