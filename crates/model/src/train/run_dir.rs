//! A run's own directory as every front end keeps it: locked while the run is live, with
//! `run.json` (the config and settings) and `metrics.jsonl` (every step), which `anetrain plot`
//! and `anetrain dashboard` read whether the run came from the CLI, C or Python.

use std::path::{Path, PathBuf};

use super::checkpoint::{check_run_dir, latest_checkpoint, DataProvenance};
use super::metrics::{MetricsLog, StepMetrics};
use super::run_lock::RunLock;
use super::trainer::{config_value, Trainer};
use crate::error::{ModelError, Result};

/// Name of the settings file in a run directory.
pub const RUN_FILE: &str = "run.json";

/// The directory a run writes its metrics, settings and due checkpoints to, held locked.
pub(super) struct RunDir {
    pub(super) path: PathBuf,
    log: MetricsLog,
    _lock: RunLock,
}

/// A run directory locked for a run that is about to start there, before its log exists.
pub(super) struct Claim {
    path: PathBuf,
    lock: RunLock,
}

impl Claim {
    /// Locks `dir` for a new run: refuses a directory inside a checkpoint, one another live
    /// process trains in, and one holding another run's checkpoints (retention would delete
    /// them). Returns the claim and, if a dead process's lock was taken over, a note saying so.
    pub(super) fn new_run(dir: &Path) -> Result<(Claim, Option<String>)> {
        // Before locking, so the lasting reason is the one named; after, in case a run
        // finished there in between.
        refuse_existing_run(dir)?;
        let (claim, note) = Claim::lock(dir)?;
        refuse_existing_run(dir)?;
        Ok((claim, note))
    }

    /// Locks `dir` to continue the run in it.
    pub(super) fn resumed_run(dir: &Path) -> Result<(Claim, Option<String>)> {
        Claim::lock(dir)
    }

    /// The claimed directory.
    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    fn lock(dir: &Path) -> Result<(Claim, Option<String>)> {
        check_run_dir(dir)?;
        let lock = RunLock::acquire(dir)?;
        let note = lock.took_over_from().map(|pid| {
            format!(
                "{} was locked by process {pid}, which is no longer running; taking over",
                dir.display()
            )
        });
        let claim = Claim {
            path: dir.to_path_buf(),
            lock,
        };
        Ok((claim, note))
    }

    /// The directory of a new run: `run.json` written, and a fresh `metrics.jsonl` holding
    /// `earlier` (the steps taken before the run had a directory).
    pub(super) fn start(
        self,
        trainer: &Trainer,
        provenance: &DataProvenance,
        earlier: &[StepMetrics],
    ) -> Result<RunDir> {
        write_run_json(&self.path, trainer, provenance)?;
        let mut log = MetricsLog::create(&self.path)?;
        for m in earlier {
            log.append(m)?;
        }
        Ok(self.with_log(log))
    }

    /// The directory of a resumed run: `run.json` rewritten (the totals may have changed) and
    /// `metrics.jsonl` cut back to the resumed step.
    pub(super) fn resume(self, trainer: &Trainer, provenance: &DataProvenance) -> Result<RunDir> {
        write_run_json(&self.path, trainer, provenance)?;
        let log = MetricsLog::resume(&self.path, trainer.current_step())?;
        Ok(self.with_log(log))
    }

    fn with_log(self, log: MetricsLog) -> RunDir {
        RunDir {
            path: self.path,
            log,
            _lock: self.lock,
        }
    }
}

impl RunDir {
    /// Appends one step to `metrics.jsonl`.
    pub(super) fn log(&mut self, metrics: &StepMetrics) -> Result<()> {
        self.log.append(metrics)
    }
}

/// Refuses a directory holding a run's checkpoints.
fn refuse_existing_run(dir: &Path) -> Result<()> {
    match latest_checkpoint(dir)? {
        Some(existing) => Err(ModelError::Options(format!(
            "{} already holds a run (latest checkpoint {}); resume it (`train --resume`, `Trainer.resume`, `anetrain_trainer_resume`) or choose another directory",
            dir.display(),
            existing.display()
        ))),
        None => Ok(()),
    }
}

/// `RUN_DIR/run.json`: the model config and settings of the run, for people and scripts.
fn write_run_json(dir: &Path, trainer: &Trainer, provenance: &DataProvenance) -> Result<()> {
    let run = serde_json::json!({
        "config": config_value(trainer.config())?,
        "options": trainer.options(),
        "data": provenance,
        "engine": trainer.engine_description(),
    });
    let path = dir.join(RUN_FILE);
    let text = serde_json::to_string_pretty(&run)
        .map_err(|e| ModelError::format(&path, format!("cannot encode the run: {e}")))?;
    std::fs::write(&path, text).map_err(|e| ModelError::io(&path, e))
}
