//! `anetrain plot`: a PNG or SVG of one or more runs' metrics, and the `loss.png` that
//! `anetrain train` keeps in its run directory.

use crate::plot::{render, Metric, RunMetrics, XAxis};
use anetrain_model::train::metrics::METRICS_FILE;
use anetrain_model::train::{MetricsFollower, StepMetrics};
use anyhow::{bail, Context, Result};
use clap::Args;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Name of the picture `anetrain train` writes into its run directory.
pub const RUN_PLOT_FILE: &str = "loss.png";

#[derive(Args)]
pub struct PlotArgs {
    /// Run directories (each holding metrics.jsonl) to draw, overlaid.
    #[arg(required = true, value_name = "RUN")]
    runs: Vec<PathBuf>,
    /// The picture to write: .png or .svg.
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    /// More panels below the loss: any of lr, tokens_per_s, grad_norm, comma-separated.
    #[arg(long, default_value = "")]
    metric: String,
    /// The horizontal axis: step or tokens.
    #[arg(long, default_value = "step")]
    x: String,
}

/// Runs `anetrain plot`.
pub fn run(args: PlotArgs) -> Result<ExitCode> {
    let metrics = Metric::parse_list(&args.metric)?;
    let x = XAxis::parse(&args.x)?;
    let records = args
        .runs
        .iter()
        .map(|dir| run_records(dir))
        .collect::<Result<Vec<_>>>()?;
    let runs: Vec<RunMetrics> = args
        .runs
        .iter()
        .zip(&records)
        .map(|(dir, records)| RunMetrics {
            name: run_name(dir),
            records,
        })
        .collect();
    render(&args.out, &runs, &metrics, x)?;
    println!("wrote {}", args.out.display());
    Ok(ExitCode::SUCCESS)
}

/// The metrics of the run directory `dir`, with an error saying what is missing.
fn run_records(dir: &Path) -> Result<Vec<StepMetrics>> {
    let path = dir.join(METRICS_FILE);
    if !path.is_file() {
        bail!(
            "{} is not a training run: it has no {METRICS_FILE}; pass the --out directory of `anetrain train`",
            dir.display()
        );
    }
    let records = read_records(&path)?;
    if records.is_empty() {
        bail!(
            "{} has no steps yet; plot it after its first step",
            path.display()
        );
    }
    Ok(records)
}

/// The legend name of a run: its directory's last component.
pub fn run_name(dir: &Path) -> String {
    dir.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| dir.display().to_string())
}

/// Redraws `RUN_DIR/loss.png` from the run's metrics; a failure is a warning, since a
/// picture is never worth failing a run for.
pub fn refresh_run_plot(run_dir: &Path) {
    let out = run_dir.join(RUN_PLOT_FILE);
    let drawn = read_records(&run_dir.join(METRICS_FILE))
        .and_then(|records| {
            let run = RunMetrics {
                name: run_name(run_dir),
                records: &records,
            };
            render(&out, &[run], &[Metric::Loss], XAxis::Step)
        })
        .with_context(|| format!("cannot draw {}", out.display()));
    if let Err(e) = drawn {
        eprintln!("warning: {e:#}");
    }
}

/// Every complete record of a metrics file, tolerating the half-written last line of a run
/// that is still training.
fn read_records(path: &Path) -> Result<Vec<StepMetrics>> {
    let mut follower = MetricsFollower::new(path);
    follower.poll()?;
    Ok(follower.records().to_vec())
}
