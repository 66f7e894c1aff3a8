//! `anetrain export`: write a run's latest checkpoint (or any model anetrain reads) as a
//! Hugging Face directory or a llama2.c `.bin`.

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
    /// loadable by transformers) or `llama2c` (.bin).
    #[arg(long, default_value = "hf")]
    format: String,
    /// The directory (hf) or file (llama2c) to write.
    #[arg(long)]
    out: PathBuf,
}

/// Runs `anetrain export`.
pub fn run(args: ExportArgs) -> Result<ExitCode> {
    let format: ExportFormat = args.format.parse()?;
    let model = ModelSource::from_path(&args.run_dir)?.load(0)?;
    model.export(format, &args.out)?;
    println!("exported {} to {}", model.description, args.out.display());
    Ok(ExitCode::SUCCESS)
}
