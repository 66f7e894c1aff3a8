//! Fusing an adapter into its base: the complete Hugging Face directory `anetrain fuse`
//! writes, loadable by `transformers` without PEFT.

use std::path::Path;

use crate::error::{ModelError, Result};
use crate::hf::{save_hf_dir, WEIGHTS_FILE};
use crate::source::ModelSource;

/// Loads `base`, folds the adapter in `adapter_dir` (PEFT or mlx-lm) into it and writes the
/// fused model, with the base's tokenizer, to the Hugging Face directory `out`. Refuses an `out`
/// that already holds a model before reading anything. Returns a one-line description.
pub fn fuse_to_hf(base: &ModelSource, adapter_dir: &Path, out: &Path) -> Result<String> {
    if out.join(WEIGHTS_FILE).exists() {
        return Err(ModelError::Input(format!(
            "{} already holds a {WEIGHTS_FILE}; fuse into an empty directory so no model is overwritten",
            out.display()
        )));
    }
    let mut model = base.load(0)?;
    model.apply_adapter(adapter_dir)?;
    save_hf_dir(out, &model.config, &model.params, model.tokenizer.as_ref())?;
    Ok(format!("fused {}", model.description))
}
