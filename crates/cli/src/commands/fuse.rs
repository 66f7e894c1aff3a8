//! `anetrain fuse`: fold a LoRA adapter (PEFT or mlx-lm) into its base model and write the
//! result as a complete Hugging Face directory.

use anetrain_model::lora::fuse_to_hf;
use anetrain_model::source::ModelSource;
use anyhow::Result;
use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args)]
pub struct FuseArgs {
    /// The base model: a run directory, checkpoint, Hugging Face directory or llama2.c .bin.
    #[arg(long)]
    model: String,
    /// The adapter directory: adapter_config.json plus adapter_model.safetensors (PEFT) or
    /// adapters.safetensors (mlx-lm).
    #[arg(long)]
    adapter: PathBuf,
    /// The Hugging Face directory to write (config.json, model.safetensors, tokenizer).
    #[arg(long)]
    out: PathBuf,
}

/// Runs `anetrain fuse`.
pub fn run(args: FuseArgs) -> Result<ExitCode> {
    let base = ModelSource::parse(&args.model)?;
    let done = fuse_to_hf(&base, &args.adapter, &args.out)?;
    println!("{done}; wrote {}", args.out.display());
    Ok(ExitCode::SUCCESS)
}
