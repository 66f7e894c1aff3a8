//! `anetrain export`: write a run's latest checkpoint (or any model anetrain reads) as a
//! Hugging Face directory or a llama2.c `.bin`.

use anetrain_model::hf::save_hf_dir;
use anetrain_model::llama2c::write_llama2c;
use anetrain_model::source::ModelSource;
use anyhow::{bail, Result};
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
    if args.format != "hf" && args.format != "llama2c" {
        bail!("unknown --format `{}`; choose hf or llama2c", args.format);
    }
    let model = ModelSource::from_path(&args.run_dir)?.load(0)?;
    match args.format.as_str() {
        "hf" => {
            if args.out.join("model.safetensors").exists() {
                bail!(
                    "{} already holds a model.safetensors; export into an empty directory so no model is overwritten",
                    args.out.display()
                );
            }
            save_hf_dir(
                &args.out,
                &model.config,
                &model.params,
                model.tokenizer.as_ref(),
            )?;
        }
        _ => {
            if args.out.exists() {
                bail!(
                    "{} already exists; pass a new file name to --out",
                    args.out.display()
                );
            }
            write_llama2c(&args.out, &model.config, &model.params)?;
        }
    }
    println!("exported {} to {}", model.description, args.out.display());
    Ok(ExitCode::SUCCESS)
}
