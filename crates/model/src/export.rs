//! Writing a model in another tool's format: a Hugging Face directory (with the tokenizer), a
//! llama2.c `.bin`, or a LoRA run's adapter as PEFT or mlx-lm files, never over an existing
//! model. `anetrain export`, the C library and the Python package all export here.

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use crate::error::{ModelError, Result};
use crate::hf::save_hf_dir;
use crate::llama2c::write_llama2c;
use crate::lora::format::CONFIG_FILE;
use crate::lora::{save_adapter, AdapterFormat};
use crate::source::{LoadedModel, ModelSource};

/// A format models are exported to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExportFormat {
    /// `hf`: config.json, model.safetensors, generation_config.json and the tokenizer, a
    /// directory transformers loads.
    Hf,
    /// `llama2c`: one llama2.c `.bin` file.
    Llama2c,
    /// `peft`: a LoRA run's adapter as PEFT writes it.
    Peft,
    /// `mlx`: a LoRA run's adapter as mlx-lm writes it.
    Mlx,
}

impl ExportFormat {
    /// The adapter format this is, for the formats that hold only an adapter.
    pub fn adapter(self) -> Option<AdapterFormat> {
        match self {
            ExportFormat::Peft => Some(AdapterFormat::Peft),
            ExportFormat::Mlx => Some(AdapterFormat::Mlx),
            ExportFormat::Hf | ExportFormat::Llama2c => None,
        }
    }
}

impl FromStr for ExportFormat {
    type Err = ModelError;

    fn from_str(name: &str) -> Result<Self> {
        match name {
            "hf" => Ok(ExportFormat::Hf),
            "llama2c" => Ok(ExportFormat::Llama2c),
            "peft" => Ok(ExportFormat::Peft),
            "mlx" => Ok(ExportFormat::Mlx),
            other => Err(ModelError::Input(format!(
                "unknown export format `{other}`; choose hf, llama2c, peft or mlx"
            ))),
        }
    }
}

impl fmt::Display for ExportFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ExportFormat::Hf => "hf",
            ExportFormat::Llama2c => "llama2c",
            ExportFormat::Peft => "peft",
            ExportFormat::Mlx => "mlx",
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
            ExportFormat::Peft | ExportFormat::Mlx => Err(ModelError::Input(format!(
                "{} is a whole model; --format {format} writes the adapter of a LoRA run, so export the run directory (or use --format hf)",
                self.description
            ))),
        }
    }
}

impl ModelSource {
    /// Writes what this source holds in `format`: a LoRA run's adapter for `peft`/`mlx`, else
    /// the model (a LoRA run fused with its base). Returns a line saying what was written.
    pub fn export(&self, format: ExportFormat, out: &Path) -> Result<String> {
        let Some(adapter_format) = format.adapter() else {
            let model = self.load(0)?;
            model.export(format, out)?;
            return Ok(format!(
                "exported {} to {}",
                model.description,
                out.display()
            ));
        };
        if out.join(CONFIG_FILE).exists() {
            return Err(ModelError::Input(format!(
                "{} already holds an {CONFIG_FILE}; export into an empty directory so no adapter is overwritten",
                out.display()
            )));
        }
        let (adapter, base) = self.lora_adapter()?;
        save_adapter(out, adapter_format, &adapter, &base.path)?;
        Ok(format!(
            "exported the LoRA adapter ({} parameters, base {}) to {}",
            adapter.num_params(),
            base.path,
            out.display()
        ))
    }
}
