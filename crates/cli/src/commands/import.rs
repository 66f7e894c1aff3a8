//! `anetrain import`: turn a Hugging Face model directory or a llama2.c `.bin` into a run
//! directory whose checkpoint `train --init-from`, `eval` and `export` read. Also home of
//! [`load_weights`], the one place that knows every spelling of "a model on disk".

use anetrain_model::config::ModelConfig;
use anetrain_model::hf::load_hf_dir;
use anetrain_model::llama2c::read_llama2c;
use anetrain_model::params::Params;
use anetrain_model::train::checkpoint::{
    list_checkpoints, resolve_checkpoint, save_checkpoint, CheckpointMeta, FORMAT_VERSION,
};
use anetrain_model::train::trainer::config_value;
use anetrain_model::train::{Checkpoint, DataProvenance};
use anyhow::{bail, Context, Result};
use clap::Args;
use std::path::{Path, PathBuf};
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
    let (config, params, origin) = load_weights(&args.src)?;
    if !list_checkpoints(&args.out)?.is_empty() {
        bail!(
            "{} already holds checkpoints; import into a new --out directory so nothing is overwritten",
            args.out.display()
        );
    }
    let meta = CheckpointMeta {
        format_version: FORMAT_VERSION,
        step: 0,
        config: config_value(&config)?,
        train: None,
        provenance: DataProvenance::default(),
    };
    let dir = save_checkpoint(&args.out, &params, None, &meta)?;
    println!(
        "imported {origin} ({} parameters) into {}",
        params.num_params(),
        dir.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// Reads a model from any of the forms anetrain accepts, returning its config, weights and a
/// description of what was read: a llama2.c `.bin`, a Hugging Face directory, a checkpoint
/// directory, or a run directory (its latest checkpoint).
pub fn load_weights(path: &Path) -> Result<(ModelConfig, Params, String)> {
    if path.is_file() {
        let (config, params) = read_llama2c(path)
            .with_context(|| format!("reading {} as a llama2.c checkpoint", path.display()))?;
        return Ok((config, params, format!("llama2.c {}", path.display())));
    }
    if !path.exists() {
        bail!(
            "{} does not exist; pass a run directory, a checkpoint, a Hugging Face directory or a llama2.c .bin",
            path.display()
        );
    }
    // Checkpoints keep their config inside meta.json; config.json marks a Hugging Face model
    // (which may carry a meta.json of its own, as the reference fixtures do).
    if path.join("config.json").is_file() {
        let (config, params) = load_hf_dir(path)?;
        return Ok((config, params, format!("Hugging Face {}", path.display())));
    }
    let dir = resolve_checkpoint(path)?;
    let ckpt = Checkpoint::load(&dir)?;
    Ok((
        ckpt.config,
        ckpt.params,
        format!("checkpoint {} (step {})", dir.display(), ckpt.meta.step),
    ))
}
