//! Following a run's `metrics.jsonl` while it is written: each poll reads only the bytes added
//! since the last one, keeps a half-written last line for the next poll, and starts over when
//! the file was replaced or truncated (a `--resume` rewrites it), so a live view never rereads
//! the whole file per frame and never shows steps a resumed run is about to recompute.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::error::{ModelError, Result};
use crate::train::StepMetrics;

/// What one [`MetricsFollower::poll`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    /// Nothing new (or the file does not exist yet).
    None,
    /// This many records were appended.
    Appended(usize),
    /// The file was replaced, truncated or rewound to an earlier step: the records were
    /// reread from the start.
    Reloaded,
}

/// Whether a run is training now.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Activity {
    /// A live process holds the run's lock but has written no step yet (building kernels).
    Starting,
    /// A live process holds the run's lock and has written steps.
    Running,
    /// No process holds the lock and the last record reached the run's total step count.
    Finished,
    /// No process holds the lock and steps remain: the run ended early (or crashed).
    Stopped {
        /// How long ago the metrics file last changed.
        idle: Duration,
    },
}

/// Reads a growing `metrics.jsonl` incrementally.
pub struct MetricsFollower {
    path: PathBuf,
    records: Vec<StepMetrics>,
    /// Bytes of the file consumed, complete lines and `partial` together.
    offset: u64,
    /// The start of a line whose newline has not been written yet.
    partial: Vec<u8>,
    identity: Option<FileIdentity>,
    modified: Option<SystemTime>,
    skipped_lines: usize,
}

/// What tells one file from its replacement at the same path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct FileIdentity {
    device: u64,
    inode: u64,
}

impl MetricsFollower {
    /// A follower of `path` that has read nothing yet.
    pub fn new(path: &Path) -> Self {
        MetricsFollower {
            path: path.to_path_buf(),
            records: Vec::new(),
            offset: 0,
            partial: Vec::new(),
            identity: None,
            modified: None,
            skipped_lines: 0,
        }
    }

    /// The followed file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every record read so far, in file order.
    pub fn records(&self) -> &[StepMetrics] {
        &self.records
    }

    /// Complete lines that were not metrics records (a corrupted line is skipped, not fatal).
    pub fn skipped_lines(&self) -> usize {
        self.skipped_lines
    }

    /// When the file last changed, once it has been seen.
    pub fn modified(&self) -> Option<SystemTime> {
        self.modified
    }

    /// Reads whatever was added since the last poll.
    pub fn poll(&mut self) -> Result<Change> {
        let mut file = match File::open(&self.path) {
            Ok(f) => f,
            // A resume replaces the file by renaming; between runs it may not exist at all.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Change::None),
            Err(e) => return Err(ModelError::io(&self.path, e)),
        };
        let meta = file.metadata().map_err(|e| ModelError::io(&self.path, e))?;
        self.modified = meta.modified().ok().or(self.modified);
        let identity = file_identity(&meta);
        let mut change = Change::None;
        if meta.len() < self.offset || (self.identity.is_some() && identity != self.identity) {
            self.restart();
            change = Change::Reloaded;
        }
        self.identity = identity;
        if meta.len() == self.offset {
            return Ok(change);
        }
        file.seek(SeekFrom::Start(self.offset))
            .map_err(|e| ModelError::io(&self.path, e))?;
        let mut added = Vec::new();
        file.take(meta.len() - self.offset)
            .read_to_end(&mut added)
            .map_err(|e| ModelError::io(&self.path, e))?;
        self.offset += added.len() as u64;
        self.partial.extend_from_slice(&added);
        let Some(end) = self.partial.iter().rposition(|&b| b == b'\n') else {
            return Ok(change);
        };
        let rest = self.partial.split_off(end + 1);
        let complete = std::mem::replace(&mut self.partial, rest);
        let mut appended = 0;
        for line in complete.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            match serde_json::from_slice::<StepMetrics>(line) {
                Ok(m) => {
                    // A step at or before the last one means the log was rewound in place:
                    // the later records are about to be recomputed, so they go.
                    if self.records.last().is_some_and(|last| m.step <= last.step) {
                        self.records.retain(|r| r.step < m.step);
                        change = Change::Reloaded;
                    }
                    self.records.push(m);
                    appended += 1;
                }
                Err(_) => self.skipped_lines += 1,
            }
        }
        if change == Change::None && appended > 0 {
            change = Change::Appended(appended);
        }
        Ok(change)
    }

    /// Whether the run is training now, given whether a live process holds its lock
    /// ([`crate::train::run_lock::live_holder`]), its total step count (when known) and the time.
    pub fn activity(&self, held: bool, total_steps: Option<u64>, now: SystemTime) -> Activity {
        let last = self.records.last();
        if held {
            return if last.is_some() {
                Activity::Running
            } else {
                Activity::Starting
            };
        }
        match (last, total_steps) {
            (Some(last), Some(total)) if last.step >= total => Activity::Finished,
            _ => Activity::Stopped {
                idle: self
                    .modified
                    .and_then(|m| now.duration_since(m).ok())
                    .unwrap_or_default(),
            },
        }
    }

    /// Recent wall-clock seconds per step (over the last 20 records), for ETAs.
    pub fn seconds_per_step(&self) -> Option<f64> {
        let n = self.records.len();
        let (first, last) = (
            self.records.get(n.saturating_sub(21))?,
            self.records.last()?,
        );
        let steps = last.step.checked_sub(first.step).filter(|&s| s > 0)?;
        let secs = last.elapsed_s - first.elapsed_s;
        (secs > 0.0).then(|| secs / steps as f64)
    }

    fn restart(&mut self) {
        self.records.clear();
        self.offset = 0;
        self.partial.clear();
        self.skipped_lines = 0;
    }
}

#[cfg(unix)]
fn file_identity(meta: &std::fs::Metadata) -> Option<FileIdentity> {
    use std::os::unix::fs::MetadataExt;
    Some(FileIdentity {
        device: meta.dev(),
        inode: meta.ino(),
    })
}

// Elsewhere a replaced file is still noticed when it is shorter, or rewinds the step count.
#[cfg(not(unix))]
fn file_identity(_meta: &std::fs::Metadata) -> Option<FileIdentity> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::MetricsLog;
    use std::io::Write;

    fn metrics(step: u64, loss: f32) -> StepMetrics {
        StepMetrics {
            step,
            loss,
            lr: 1e-3,
            grad_norm: Some(1.0),
            loss_scale: 1.0,
            skipped: false,
            skipped_total: 0,
            tokens: step * 100,
            tokens_per_s: 1000.0,
            elapsed_s: step as f64 * 0.5,
            val_loss: None,
            perplexity: None,
        }
    }

    fn line(m: &StepMetrics) -> String {
        serde_json::to_string(m).unwrap() + "\n"
    }

    fn steps(f: &MetricsFollower) -> Vec<u64> {
        f.records().iter().map(|m| m.step).collect()
    }

    #[test]
    fn reads_only_what_was_appended_and_waits_for_a_line_end() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metrics.jsonl");
        let mut follower = MetricsFollower::new(&path);
        assert_eq!(follower.poll().unwrap(), Change::None);
        let mut file = File::create(&path).unwrap();
        write!(file, "{}{}", line(&metrics(1, 4.0)), line(&metrics(2, 3.5))).unwrap();
        assert_eq!(follower.poll().unwrap(), Change::Appended(2));
        let third = line(&metrics(3, 3.0));
        let (head, tail) = third.split_at(10);
        write!(file, "{head}").unwrap();
        assert_eq!(follower.poll().unwrap(), Change::None);
        assert_eq!(steps(&follower), [1, 2]);
        write!(file, "{tail}").unwrap();
        assert_eq!(follower.poll().unwrap(), Change::Appended(1));
        assert_eq!(steps(&follower), [1, 2, 3]);
        assert_eq!(follower.records()[2].loss, 3.0);
        assert_eq!(follower.poll().unwrap(), Change::None);
    }

    #[test]
    fn a_resume_that_rewrites_the_log_is_reread() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = MetricsLog::create(dir.path()).unwrap();
        for step in 1..=6 {
            log.append(&metrics(step, 5.0 - step as f32 * 0.1)).unwrap();
        }
        let mut follower = MetricsFollower::new(&dir.path().join("metrics.jsonl"));
        follower.poll().unwrap();
        assert_eq!(steps(&follower), [1, 2, 3, 4, 5, 6]);
        let mut log = MetricsLog::resume(dir.path(), 4).unwrap();
        log.append(&metrics(5, 1.0)).unwrap();
        assert_eq!(follower.poll().unwrap(), Change::Reloaded);
        assert_eq!(steps(&follower), [1, 2, 3, 4, 5]);
        assert_eq!(follower.records()[4].loss, 1.0);
    }

    #[test]
    fn a_log_rewound_in_place_drops_the_recomputed_steps() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metrics.jsonl");
        let mut file = File::create(&path).unwrap();
        for step in 1..=3 {
            write!(file, "{}", line(&metrics(step, 2.0))).unwrap();
        }
        let mut follower = MetricsFollower::new(&path);
        follower.poll().unwrap();
        writeln!(file, "{}not json", line(&metrics(2, 9.0))).unwrap();
        assert_eq!(follower.poll().unwrap(), Change::Reloaded);
        assert_eq!(steps(&follower), [1, 2]);
        assert_eq!(follower.records()[1].loss, 9.0);
        assert_eq!(follower.skipped_lines(), 1);
    }

    #[test]
    fn activity_follows_the_lock_and_the_step_total() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metrics.jsonl");
        let mut follower = MetricsFollower::new(&path);
        let now = SystemTime::now();
        assert_eq!(follower.activity(true, Some(10), now), Activity::Starting);
        std::fs::write(&path, line(&metrics(1, 2.0)) + &line(&metrics(2, 2.0))).unwrap();
        follower.poll().unwrap();
        let written = follower.modified().unwrap();
        assert_eq!(follower.activity(true, Some(10), now), Activity::Running);
        // A resumed run may go past the total it was started with.
        assert_eq!(follower.activity(true, Some(1), now), Activity::Running);
        let later = written + Duration::from_secs(600);
        assert_eq!(
            follower.activity(false, Some(10), later),
            Activity::Stopped {
                idle: Duration::from_secs(600)
            }
        );
        assert_eq!(follower.activity(false, Some(2), later), Activity::Finished);
    }
}
