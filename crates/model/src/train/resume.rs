//! Resuming a run from its directory as every front end does: the latest intact checkpoint
//! (unloadable newer ones set aside), the settings a resumed run may change, the run's own data
//! and tokenizer unless others are given, and the log cut back to the resumed step, so the run
//! continues exactly as the uninterrupted one would have. `anetrain train --resume`,
//! `anetrain_trainer_resume` and `anetrain.Trainer.resume` all call [`Run::resume`].

use std::path::PathBuf;

use anetrain_data::{TextOptions, TokenizerSource};

use super::checkpoint::{load_latest_intact, set_aside, DataProvenance};
use super::run_dir::Claim;
use super::start::{OptionChanges, Run, RunSettings};
use super::trainer::Trainer;
use crate::config::ModelConfig;
use crate::device_choice::DeviceChoice;
use crate::error::{ModelError, Result};
use crate::lora::LoraRequest;
use crate::source::{check_tokenizer_fits, ModelSource, ModelTokenizer};

/// What a resumed run is continued with; every `None` keeps the run's own.
#[derive(Clone, Debug)]
pub struct ResumePlan {
    /// The run directory.
    pub dir: PathBuf,
    /// Changes to the saved settings (only the total steps and the eval/save intervals may
    /// differ from the saved ones).
    pub changes: OptionChanges,
    /// Training data, spelled as for a new run.
    pub data: Option<String>,
    /// Separate validation data.
    pub val_data: Option<String>,
    /// Share held out for validation.
    pub val_fraction: Option<f64>,
    /// Count only completion / assistant tokens (a run that did keeps doing so).
    pub mask_prompt: bool,
    /// The tokenizer: it must be the run's own (a different one would change the data).
    pub tokenizer: Option<TokenizerSource>,
    /// Where the engine runs.
    pub device: DeviceChoice,
    /// On the ANE, the capability file that picks kernel forms (`None`: doctor's, if any).
    pub capabilities: Option<PathBuf>,
    /// A preset the run's model must be (the config is compared, the vocabulary aside).
    pub preset: Option<String>,
    /// LoRA settings, refused: a resumed run continues its own adapter (or full training).
    pub lora: LoraRequest,
}

impl ResumePlan {
    /// Resuming the run in `dir` with nothing changed, on the automatically chosen device.
    pub fn new(dir: impl Into<PathBuf>) -> ResumePlan {
        ResumePlan {
            dir: dir.into(),
            changes: OptionChanges::default(),
            data: None,
            val_data: None,
            val_fraction: None,
            mask_prompt: false,
            tokenizer: None,
            device: DeviceChoice::default(),
            capabilities: None,
            preset: None,
            lora: LoraRequest::default(),
        }
    }
}

impl RunSettings {
    /// The plan that resumes the run in `dir` with these settings (and `data`, if given)
    /// changed.
    pub fn resume_plan(self, dir: impl Into<PathBuf>, data: Option<String>) -> Result<ResumePlan> {
        Ok(ResumePlan {
            changes: self.changes,
            data,
            val_data: self.val_data,
            val_fraction: self.val_fraction,
            tokenizer: self
                .tokenizer
                .as_deref()
                .map(TokenizerSource::parse)
                .transpose()?,
            device: self.device.as_deref().unwrap_or("auto").parse()?,
            lora: self.lora,
            ..ResumePlan::new(dir)
        })
    }
}

impl Run {
    /// Continues the run in `plan.dir` from its latest intact checkpoint; `text` tokenizes
    /// text data. The directory is locked before anything loads.
    pub fn resume(plan: ResumePlan, text: &TextOptions) -> Result<Run> {
        if plan.lora.is_requested() {
            return Err(ModelError::Options(
                "a resumed run continues its own adapter (or full training); drop the LoRA \
                 settings (--lora-*, --adapter; lora_* and adapter in C and Python)"
                    .into(),
            ));
        }
        let dir = plan.dir;
        let (claim, note) = Claim::resumed_run(&dir)?;
        let mut notes: Vec<String> = note.into_iter().collect();
        let (ckpt, unusable) = load_latest_intact(&dir)?;
        for bad in &unusable {
            let aside = set_aside(&bad.dir)?;
            notes.push(format!(
                "skipping checkpoint {} ({}); moved it to {}",
                bad.dir.display(),
                bad.reason,
                aside.display()
            ));
        }
        let Some(state) = &ckpt.meta.train else {
            return Err(ModelError::Options(format!(
                "{} holds imported weights without training state; start a new run from them instead of resuming (`anetrain train --init-from {}`; in C and Python, pass it as the model)",
                ckpt.dir.display(),
                dir.display()
            )));
        };
        if let Some(name) = &plan.preset {
            let mut expected = ModelConfig::preset(name)?;
            expected.vocab_size = ckpt.config.vocab_size;
            ckpt.check_config(&expected)?;
        }
        let options = plan.changes.apply(state.options.clone())?;
        let saved = &ckpt.meta.provenance;
        let mut provenance = DataProvenance {
            data: plan.data.or(saved.data.clone()),
            tokenizer: None,
            val_data: plan.val_data.or(saved.val_data.clone()),
            val_fraction: plan.val_fraction.or(saved.val_fraction),
            mask_prompt: plan.mask_prompt || saved.mask_prompt,
        };
        let carried = ModelSource::Checkpoint(ckpt.dir.clone()).tokenizer()?;
        let chosen = match (plan.tokenizer, carried) {
            (Some(given), Some(own)) if !given.same_as(&own) => {
                return Err(ModelError::Options(format!(
                    "the run in {} was trained with the tokenizer {}; a resumed run keeps it, so give no tokenizer (or start a new run from {})",
                    dir.display(),
                    own.spec(),
                    dir.display()
                )))
            }
            (given, own) => given.or(own),
        };
        let chosen = chosen.or(provenance
            .byte_tokenizer_by_default()?
            .then_some(TokenizerSource::Byte));
        let tokenizer = match chosen {
            Some(source) => {
                let tokenizer = source.open()?;
                check_tokenizer_fits(tokenizer.as_ref(), &source, &ckpt.config)?;
                provenance.tokenizer = Some(source.copy_into(&dir)?.spec());
                Some(ModelTokenizer { source, tokenizer })
            }
            None => None,
        };
        let tok = tokenizer
            .as_ref()
            .map(|t| (t.tokenizer.as_ref(), &t.source));
        let opened = provenance.open(tok, &options, text)?;
        notes.extend(opened.truncation);
        let (engine, why) = plan.device.engine_with(
            &ckpt.config,
            options.seq,
            &ckpt.params,
            plan.capabilities.as_deref(),
        )?;
        notes.push(format!("device: {why}"));
        let trainer = Trainer::resume(&ckpt, options, opened.data, engine)?;
        notes.push(format!(
            "resuming {} at step {} of {}",
            ckpt.dir.display(),
            trainer.current_step(),
            trainer.options().steps
        ));
        let home = claim.resume(&trainer, &provenance)?;
        let saved_at = Some(trainer.current_step());
        Ok(Run {
            trainer,
            tokenizer,
            notes,
            provenance,
            home: Some(home),
            others: Vec::new(),
            unlogged: Vec::new(),
            saved_at,
        })
    }
}
