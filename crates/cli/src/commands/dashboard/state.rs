//! What the dashboard knows about each run, kept current by polling, and what the keys change.

use anetrain_model::config::ModelConfig;
use anetrain_model::train::checkpoint::latest_checkpoint;
use anetrain_model::train::metrics::METRICS_FILE;
use anetrain_model::train::run_lock::live_holder;
use anetrain_model::train::{Activity, MetricsFollower, StepMetrics, RUN_FILE};
use anyhow::{bail, Result};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

/// Name of the file `anetrain train` keeps its last sample text in.
pub const SAMPLE_FILE: &str = "sample.txt";

/// How often the slow-changing parts of a run (run.json, checkpoints, sample) are reread;
/// the metrics are polled every frame, reading only what was appended.
const INFO_EVERY: Duration = Duration::from_secs(2);

/// One followed run.
pub struct RunView {
    /// The run directory.
    pub dir: PathBuf,
    /// Its metrics, read incrementally.
    pub follower: MetricsFollower,
    /// Device, model and step total from `run.json`, when it is there.
    pub info: RunInfo,
    /// Directory name of the latest complete checkpoint.
    pub checkpoint: Option<String>,
    /// The sample text `train` saved at its end.
    pub sample: Option<String>,
    /// The pid of the live process training the run (it holds the run's lock).
    pub holder: Option<u32>,
    /// Why the run cannot be read right now (shown instead of failing the dashboard).
    pub problem: Option<String>,
    info_read: Option<Instant>,
}

/// The facts of `run.json` the dashboard shows.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RunInfo {
    /// The engine's description (device and precision).
    pub device: Option<String>,
    /// A one-line summary of the model's shape.
    pub model: Option<String>,
    /// The run's total optimizer steps.
    pub total_steps: Option<u64>,
}

impl RunInfo {
    /// Reads `dir/run.json`; missing or unreadable parts stay `None`.
    pub fn read(dir: &Path) -> Self {
        let Ok(text) = std::fs::read_to_string(dir.join(RUN_FILE)) else {
            return RunInfo::default();
        };
        let Ok(json) = serde_json::from_str::<serde_json::Value>(&text) else {
            return RunInfo::default();
        };
        let model = ModelConfig::from_hf_json(&json["config"].to_string())
            .ok()
            .map(|c| {
                format!(
                    "{} dim {} x {} layers, {} heads, vocab {}",
                    c.family.model_type(),
                    c.dim,
                    c.n_layers,
                    c.n_heads,
                    c.vocab_size
                )
            });
        RunInfo {
            device: json["engine"].as_str().map(str::to_string),
            model,
            total_steps: json["options"]["steps"].as_u64(),
        }
    }
}

impl RunView {
    /// Starts following `dir`, which must be a directory.
    pub fn open(dir: &Path) -> Result<Self> {
        if !dir.is_dir() {
            bail!(
                "no such run: {} is not a directory; pass the --out directory of `anetrain train`",
                dir.display()
            );
        }
        let mut view = RunView {
            dir: dir.to_path_buf(),
            follower: MetricsFollower::new(&dir.join(METRICS_FILE)),
            info: RunInfo::default(),
            checkpoint: None,
            sample: None,
            holder: None,
            problem: None,
            info_read: None,
        };
        view.refresh(Instant::now());
        Ok(view)
    }

    /// Display name: the directory's last component.
    pub fn name(&self) -> String {
        crate::commands::plot::run_name(&self.dir)
    }

    /// Reads what changed; returns whether anything visible may have changed.
    pub fn refresh(&mut self, now: Instant) -> bool {
        let polled = self.follower.poll();
        let mut changed = !matches!(polled, Ok(anetrain_model::train::Change::None));
        self.problem = polled.err().map(|e| e.to_string());
        if self
            .info_read
            .is_none_or(|t| now.duration_since(t) >= INFO_EVERY)
        {
            self.info_read = Some(now);
            let info = RunInfo::read(&self.dir);
            let checkpoint = latest_checkpoint(&self.dir).ok().flatten().map(|p| {
                p.file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default()
            });
            let sample = std::fs::read_to_string(self.dir.join(SAMPLE_FILE)).ok();
            let holder = live_holder(&self.dir);
            changed |= info != self.info
                || checkpoint != self.checkpoint
                || sample != self.sample
                || holder != self.holder;
            (self.info, self.checkpoint, self.sample, self.holder) =
                (info, checkpoint, sample, holder);
        }
        changed
    }

    /// The records read so far.
    pub fn records(&self) -> &[StepMetrics] {
        self.follower.records()
    }

    /// Whether the run is training now.
    pub fn activity(&self, now: SystemTime) -> Activity {
        self.follower
            .activity(self.holder.is_some(), self.info.total_steps, now)
    }

    /// Seconds left at the recent pace, while the run has steps to go.
    pub fn eta_s(&self) -> Option<f64> {
        let last = self.records().last()?;
        let left = self.info.total_steps?.checked_sub(last.step)?;
        Some(self.follower.seconds_per_step()? * left as f64)
    }
}

/// The whole dashboard: its runs and the view settings the keys change.
pub struct App {
    /// The runs, in command-line order.
    pub runs: Vec<RunView>,
    /// Index of the run shown.
    pub selected: usize,
    /// Whether the loss axis is logarithmic.
    pub log_scale: bool,
    /// The step range shown, `None` for all of it; arrows pan and zoom it.
    pub window: Option<(f64, f64)>,
}

/// What a key asks of the dashboard's loop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyAction {
    /// Redraw.
    Redraw,
    /// Leave the dashboard.
    Quit,
    /// Nothing to do.
    Ignore,
}

/// The keys the dashboard understands (a subset of the terminal's, so tests need no terminal).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Key {
    /// q, Esc or Ctrl-C.
    Quit,
    /// l: toggle the logarithmic loss axis.
    LogScale,
    /// Tab: next run.
    NextRun,
    /// Shift-Tab: previous run.
    PrevRun,
    /// Left: pan towards step 0.
    Left,
    /// Right: pan towards the latest step.
    Right,
    /// Up: zoom in on the step axis.
    ZoomIn,
    /// Down: zoom out (to everything).
    ZoomOut,
}

impl App {
    /// A dashboard over `runs`, showing the first, everything, linear.
    pub fn new(runs: Vec<RunView>) -> Self {
        App {
            runs,
            selected: 0,
            log_scale: false,
            window: None,
        }
    }

    /// The run shown.
    pub fn current(&self) -> &RunView {
        &self.runs[self.selected]
    }

    /// Polls every run; returns whether anything visible may have changed.
    pub fn refresh(&mut self) -> bool {
        let now = Instant::now();
        self.runs
            .iter_mut()
            .fold(false, |changed, run| run.refresh(now) | changed)
    }

    /// The step range of the shown run's records, at least one step wide.
    pub fn step_extent(&self) -> (f64, f64) {
        let records = self.current().records();
        let lo = records.first().map_or(0.0, |m| m.step as f64);
        let hi = records.last().map_or(1.0, |m| m.step as f64);
        (lo, hi.max(lo + 1.0))
    }

    /// The step range shown: the window, clamped to the records.
    pub fn step_range(&self) -> (f64, f64) {
        let (lo, hi) = self.step_extent();
        match self.window {
            None => (lo, hi),
            Some((a, b)) => {
                let width = (b - a).min(hi - lo);
                let a = a.clamp(lo, hi - width);
                (a, a + width)
            }
        }
    }

    /// Applies one key.
    pub fn key(&mut self, key: Key) -> KeyAction {
        let (lo, hi) = self.step_range();
        let width = hi - lo;
        match key {
            Key::Quit => return KeyAction::Quit,
            Key::LogScale => self.log_scale = !self.log_scale,
            Key::NextRun => self.selected = (self.selected + 1) % self.runs.len(),
            Key::PrevRun => self.selected = (self.selected + self.runs.len() - 1) % self.runs.len(),
            Key::Left => self.window = Some((lo - width / 4.0, hi - width / 4.0)),
            Key::Right => self.window = Some((lo + width / 4.0, hi + width / 4.0)),
            Key::ZoomIn if width >= 4.0 => {
                // Zoom on the newest half: that is where a live run changes.
                self.window = Some((hi - width / 2.0, hi));
            }
            Key::ZoomIn => return KeyAction::Ignore,
            Key::ZoomOut => {
                let (full_lo, full_hi) = self.step_extent();
                self.window = (width * 2.0 < full_hi - full_lo).then_some((hi - width * 2.0, hi));
            }
        }
        KeyAction::Redraw
    }
}
