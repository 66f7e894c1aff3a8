//! `anetrain export`: write a run's latest checkpoint (or any model anetrain reads) as a
//! Hugging Face directory or a llama2.c `.bin`, or a LoRA run's adapter as PEFT or mlx-lm
//! files.

use anetrain_model::export::ExportFormat;
use anetrain_model::source::ModelSource;
use anyhow::Result;
use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args)]
pub struct ExportArgs {
    /// A run directory (its latest checkpoint is exported), a checkpoint directory, a Hugging
    /// Face directory or a llama2.c .bin.
    run_dir: PathBuf,
    /// `hf` (config.json, model.safetensors, generation_config.json and the tokenizer,
    /// loadable by transformers; a LoRA run is written fused with its base), `llama2c` (.bin),
    /// or for a LoRA run its adapter alone: `peft` (adapter_config.json +
    /// adapter_model.safetensors) or `mlx` (mlx-lm's adapters.safetensors).
    #[arg(long, default_value = "hf")]
    format: String,
    /// The directory (hf) or file (llama2c) to write.
    #[arg(long)]
    out: PathBuf,
}

/// Runs `anetrain export`.
pub fn run(args: ExportArgs) -> Result<ExitCode> {
    let format: ExportFormat = args.format.parse()?;
    let written = ModelSource::from_path(&args.run_dir)?.export(format, &args.out)?;
    println!("{written}");
    Ok(ExitCode::SUCCESS)
}
