//! `anetrain export`: write a run's latest checkpoint (or any model anetrain reads) as a
//! Hugging Face directory or a llama2.c `.bin`, or a LoRA run's adapter as PEFT or mlx-lm
//! files.

use anetrain_model::hf::save_hf_dir;
use anetrain_model::llama2c::write_llama2c;
use anetrain_model::lora::format::CONFIG_FILE;
use anetrain_model::lora::{save_adapter, AdapterFormat};
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
    if !["hf", "llama2c", "peft", "mlx"].contains(&args.format.as_str()) {
        bail!(
            "unknown --format `{}`; choose hf, llama2c, peft or mlx",
            args.format
        );
    }
    let source = ModelSource::from_path(&args.run_dir)?;
    if let Ok(format) = args.format.parse::<AdapterFormat>() {
        if args.out.join(CONFIG_FILE).exists() {
            bail!(
                "{} already holds an {CONFIG_FILE}; export into an empty directory so no adapter is overwritten",
                args.out.display()
            );
        }
        let (adapter, base) = source.lora_adapter()?;
        save_adapter(&args.out, format, &adapter, &base.path)?;
        println!(
            "exported the LoRA adapter of {} ({} parameters, base {}) to {}",
            args.run_dir.display(),
            adapter.num_params(),
            base.path,
            args.out.display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let model = source.load(0)?;
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
