//! `anetrain export`: write a run's latest checkpoint (or a given checkpoint) as a Hugging Face
//! directory or a llama2.c `.bin`.

use super::import::load_weights;
use anetrain_model::hf::save_hf_dir;
use anetrain_model::llama2c::write_llama2c;
use anyhow::{bail, Result};
use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args)]
pub struct ExportArgs {
    /// A run directory (its latest checkpoint is exported) or a checkpoint directory.
    run_dir: PathBuf,
    /// `hf` (config.json + model.safetensors, loadable by transformers) or `llama2c` (.bin).
    #[arg(long, default_value = "hf")]
    format: String,
    /// The directory (hf) or file (llama2c) to write.
    #[arg(long)]
    out: PathBuf,
}

/// Runs `anetrain export`.
pub fn run(args: ExportArgs) -> Result<ExitCode> {
    let (config, params, origin) = load_weights(&args.run_dir)?;
    match args.format.as_str() {
        "hf" => {
            if args.out.join("model.safetensors").exists() {
                bail!(
                    "{} already holds a model.safetensors; export into an empty directory so no model is overwritten",
                    args.out.display()
                );
            }
            save_hf_dir(&args.out, &config, &params)?;
        }
        "llama2c" => {
            if args.out.exists() {
                bail!(
                    "{} already exists; pass a new file name to --out",
                    args.out.display()
                );
            }
            write_llama2c(&args.out, &config, &params)?;
        }
        other => bail!("unknown --format `{other}`; choose hf or llama2c"),
    }
    println!("exported {origin} to {}", args.out.display());
    Ok(ExitCode::SUCCESS)
}
