//! Writing a model in another tool's format: a Hugging Face directory (with the tokenizer) or
//! a llama2.c `.bin`, never over an existing model. `anetrain export`, the C library and the
//! Python package all export here.

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use crate::error::{ModelError, Result};
use crate::hf::save_hf_dir;
use crate::llama2c::write_llama2c;
use crate::source::LoadedModel;

/// A format models are exported to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExportFormat {
    /// `hf`: config.json, model.safetensors, generation_config.json and the tokenizer, a
    /// directory transformers loads.
    Hf,
    /// `llama2c`: one llama2.c `.bin` file.
    Llama2c,
}

impl FromStr for ExportFormat {
    type Err = ModelError;

    fn from_str(name: &str) -> Result<Self> {
        match name {
            "hf" => Ok(ExportFormat::Hf),
            "llama2c" => Ok(ExportFormat::Llama2c),
            other => Err(ModelError::Input(format!(
                "unknown export format `{other}`; choose hf or llama2c"
            ))),
        }
    }
}

impl fmt::Display for ExportFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ExportFormat::Hf => "hf",
            ExportFormat::Llama2c => "llama2c",
        })
    }
}

impl LoadedModel {
    /// Writes the model to `out` (a directory for `hf`, a file for `llama2c`); refuses an `out`
    /// that already holds a model, so nothing saved is overwritten.
    pub fn export(&self, format: ExportFormat, out: &Path) -> Result<()> {
        match format {
            ExportFormat::Hf => {
                if out.join("model.safetensors").exists() {
                    return Err(ModelError::Input(format!(
                        "{} already holds a model.safetensors; export into an empty directory so no model is overwritten",
                        out.display()
                    )));
                }
                save_hf_dir(out, &self.config, &self.params, self.tokenizer.as_ref())
            }
            ExportFormat::Llama2c => {
                if out.exists() {
                    return Err(ModelError::Input(format!(
                        "{} already exists; pass a new file name to export to",
                        out.display()
                    )));
                }
                write_llama2c(out, &self.config, &self.params)
            }
        }
    }
}
