//! `anetrain import`: turn a Hugging Face model directory or a llama2.c `.bin` into a run
//! directory whose checkpoint `train --init-from`, `eval`, `generate` and `export` read; the
//! run keeps a copy of the source's tokenizer.

use anetrain_model::source::ModelSource;
use anetrain_model::train::checkpoint::{
    list_checkpoints, save_checkpoint, CheckpointMeta, FORMAT_VERSION,
};
use anetrain_model::train::trainer::config_value;
use anetrain_model::train::DataProvenance;
use anyhow::{bail, Context, Result};
use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args)]
pub struct ImportArgs {
    /// A Hugging Face model directory (config.json + safetensors) or a llama2.c .bin file.
    src: PathBuf,
    /// The run directory to create; it must not hold checkpoints yet.
    #[arg(long)]
    out: PathBuf,
}

/// Runs `anetrain import`.
pub fn run(args: ImportArgs) -> Result<ExitCode> {
    if !list_checkpoints(&args.out)?.is_empty() {
        bail!(
            "{} already holds checkpoints; import into a new --out directory so nothing is overwritten",
            args.out.display()
        );
    }
    let model = ModelSource::from_path(&args.src)?.load(0)?;
    if let Some(t) = model.tokenizer(None)? {
        std::fs::create_dir_all(&args.out)
            .with_context(|| format!("cannot create {}", args.out.display()))?;
        t.source.copy_into(&args.out)?;
    }
    let meta = CheckpointMeta {
        format_version: FORMAT_VERSION,
        step: 0,
        config: config_value(&model.config)?,
        train: None,
        provenance: DataProvenance {
            tokenizer: model.tokenizer.as_ref().map(|t| t.spec()),
            ..DataProvenance::default()
        },
        lora_base: None,
    };
    let dir = save_checkpoint(&args.out, &model.params, None, &meta)?;
    println!(
        "imported {} ({} parameters) into {}",
        model.description,
        model.params.num_params(),
        dir.display()
    );
    Ok(ExitCode::SUCCESS)
}
