//! Per-step metrics: one JSON object per line in `RUN_DIR/metrics.jsonl`, appended and flushed
//! as each step ends, so a crashed run keeps everything it measured.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{ModelError, Result};

/// Name of the metrics file in a run directory.
pub const METRICS_FILE: &str = "metrics.jsonl";

/// What one optimizer step reports.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StepMetrics {
    /// Steps completed, counting this one (1 for the first).
    pub step: u64,
    /// Mean training loss over the step's micro-batches.
    pub loss: f32,
    /// Learning rate this step used.
    pub lr: f32,
    /// Global gradient norm before clipping; `None` when the gradients were not finite.
    pub grad_norm: Option<f64>,
    /// Loss scale this step's gradients were computed with.
    pub loss_scale: f32,
    /// Whether the update was skipped because the gradients overflowed.
    pub skipped: bool,
    /// Steps skipped so far in the run.
    pub skipped_total: u64,
    /// Training tokens consumed so far.
    pub tokens: u64,
    /// Training throughput of this step.
    pub tokens_per_s: f64,
    /// Wall-clock seconds of training so far (across resumes).
    pub elapsed_s: f64,
    /// Validation loss, on evaluation steps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub val_loss: Option<f32>,
    /// `exp(val_loss)`, on evaluation steps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub perplexity: Option<f32>,
}

/// An open `metrics.jsonl` that steps are appended to.
pub struct MetricsLog {
    path: PathBuf,
    file: File,
}

impl MetricsLog {
    /// Starts a fresh log in `run_dir`, replacing any earlier one.
    pub fn create(run_dir: &Path) -> Result<Self> {
        let path = run_dir.join(METRICS_FILE);
        let file = File::create(&path).map_err(|e| ModelError::io(&path, e))?;
        Ok(MetricsLog { path, file })
    }

    /// Continues the log of a run resumed at `step`: lines of later steps (written after that
    /// checkpoint by the interrupted run, and about to be recomputed) are dropped first, so the
    /// log reads as one uninterrupted run.
    pub fn resume(run_dir: &Path, step: u64) -> Result<Self> {
        let path = run_dir.join(METRICS_FILE);
        let kept: Vec<String> = match File::open(&path) {
            Ok(f) => {
                let mut kept = Vec::new();
                for line in BufReader::new(f).lines() {
                    let line = line.map_err(|e| ModelError::io(&path, e))?;
                    let line_step = serde_json::from_str::<StepMetrics>(&line).map(|m| m.step);
                    if matches!(line_step, Ok(s) if s <= step) {
                        kept.push(line);
                    }
                }
                kept
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(ModelError::io(&path, e)),
        };
        // Rewrite through a temporary file so a crash here cannot lose the kept lines.
        let tmp = run_dir.join(format!("{METRICS_FILE}.tmp"));
        let mut text = kept.join("\n");
        if !text.is_empty() {
            text.push('\n');
        }
        std::fs::write(&tmp, text).map_err(|e| ModelError::io(&tmp, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| ModelError::io(&path, e))?;
        let file = OpenOptions::new()
            .append(true)
            .open(&path)
            .map_err(|e| ModelError::io(&path, e))?;
        Ok(MetricsLog { path, file })
    }

    /// Appends one line and flushes it.
    pub fn append(&mut self, metrics: &StepMetrics) -> Result<()> {
        let line = serde_json::to_string(metrics)
            .map_err(|e| ModelError::format(&self.path, format!("cannot encode metrics: {e}")))?;
        writeln!(self.file, "{line}")
            .and_then(|()| self.file.flush())
            .map_err(|e| ModelError::io(&self.path, e))
    }
}

/// Reads every line of a metrics file.
pub fn read_metrics(path: &Path) -> Result<Vec<StepMetrics>> {
    let f = File::open(path).map_err(|e| ModelError::io(path, e))?;
    let mut out = Vec::new();
    for (i, line) in BufReader::new(f).lines().enumerate() {
        let line = line.map_err(|e| ModelError::io(path, e))?;
        out.push(serde_json::from_str(&line).map_err(|e| {
            ModelError::format(path, format!("line {} is not a metrics record: {e}", i + 1))
        })?);
    }
    Ok(out)
}
