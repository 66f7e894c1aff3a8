//! The dashboard drawn into ratatui's `TestBackend` at 80x24 from recorded metrics files,
//! checked against what the records say.

use super::state::{App, Key, RunView, SAMPLE_FILE};
use super::view::draw;
use anetrain_model::config::ModelConfig;
use anetrain_model::train::run_lock::LOCK_FILE;
use anetrain_model::train::trainer::config_value;
use anetrain_model::train::{MetricsLog, StepMetrics};
use ratatui::backend::TestBackend;
use ratatui::Terminal;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, SystemTime};

/// A record whose every field is derived from `step`, so tests know what the screen must say.
fn record(step: u64, loss: f32) -> StepMetrics {
    StepMetrics {
        step,
        loss,
        lr: 2e-3,
        grad_norm: Some(0.75),
        loss_scale: 1024.0,
        skipped: false,
        skipped_total: 3,
        tokens: step * 1000,
        tokens_per_s: 12345.0,
        elapsed_s: step as f64 * 2.0,
        val_loss: step.is_multiple_of(10).then_some(loss + 0.5),
        perplexity: None,
    }
}

/// Marks the run as trained by this (live) process, as `train`'s run lock does.
fn hold(dir: &Path) {
    std::fs::write(dir.join(LOCK_FILE), format!("{}\n", std::process::id())).unwrap();
}

/// A run directory with `run.json` (tiny preset, `total` steps) and records `1..=last`.
fn recorded_run(dir: &Path, total: u64, last: u64) {
    let run = serde_json::json!({
        "config": config_value(&ModelConfig::preset("tiny").unwrap()).unwrap(),
        "options": { "steps": total },
        "engine": "cpu (f32)",
    });
    std::fs::write(dir.join("run.json"), run.to_string()).unwrap();
    let mut log = MetricsLog::create(dir).unwrap();
    for step in 1..=last {
        log.append(&record(step, 5.0 - step as f32 * 0.02)).unwrap();
    }
}

/// The screen as lines of text.
fn screen(app: &App, now: SystemTime) -> Vec<String> {
    let mut terminal = Terminal::new(TestBackend::new(80, 24)).unwrap();
    terminal.draw(|f| draw(f, app, now)).unwrap();
    let buffer = terminal.backend().buffer();
    buffer
        .content
        .chunks(buffer.area.width as usize)
        .map(|row| row.iter().map(|c| c.symbol()).collect())
        .collect()
}

/// The numbers of the row of step-axis labels (the only row holding only numbers and borders).
fn x_labels(lines: &[String]) -> Vec<String> {
    lines
        .iter()
        .map(|l| {
            l.split(|c: char| c.is_whitespace() || c == '│')
                .filter(|w| !w.is_empty())
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .rfind(|w| w.len() >= 2 && w.iter().all(|w| w.parse::<f64>().is_ok()))
        .unwrap_or_default()
}

/// The loss-axis labels, top to bottom: a number alone between the chart's border and axis.
fn y_labels(lines: &[String]) -> Vec<f64> {
    lines
        .iter()
        .filter_map(|l| l.split('│').nth(1)?.trim().parse().ok())
        .collect()
}

fn shows(lines: &[String], text: &str) -> bool {
    lines.iter().any(|l| l.contains(text))
}

fn app_for(dir: &Path) -> App {
    App::new(vec![RunView::open(dir).unwrap()])
}

/// The wall-clock time just after the run's metrics were last written.
fn fresh(app: &App) -> SystemTime {
    app.current().follower.modified().unwrap() + Duration::from_secs(1)
}

#[test]
fn a_running_run_shows_its_latest_values_progress_and_axes() {
    let dir = tempfile::tempdir().unwrap();
    recorded_run(dir.path(), 200, 50);
    hold(dir.path());
    let app = app_for(dir.path());
    let lines = screen(&app, fresh(&app));
    let text = lines.join("\n");
    assert!(
        shows(&lines, &format!("running (pid {})", std::process::id())),
        "{text}"
    );
    assert!(shows(&lines, "step 50/200 (25%)"), "{text}");
    // Step 50: loss 5 - 50 * 0.02 = 4.0, validation 4.5 (every 10th step).
    assert!(shows(&lines, "loss 4.0000"), "{text}");
    assert!(
        shows(&lines, &format!("val 4.5000 (ppl {:.2}", 4.5f32.exp())),
        "{text}"
    );
    assert!(shows(&lines, "tok/s 12345"), "{text}");
    assert!(shows(&lines, "lr 2.00e-3"), "{text}");
    assert!(shows(&lines, "grad norm 0.750"), "{text}");
    assert!(shows(&lines, "loss scale 1024"), "{text}");
    assert!(shows(&lines, "skipped 3"), "{text}");
    // 50 steps of 2 s: 1m40s elapsed; 150 steps to go at 2 s: 5m00s.
    assert!(shows(&lines, "elapsed 1m40s"), "{text}");
    assert!(shows(&lines, "eta 5m00s"), "{text}");
    assert!(shows(&lines, "llama dim"), "{text}");
    assert!(shows(&lines, "cpu (f32)"), "{text}");
    // The step axis spans the records, 1 to 50, labelled at its ends and middle (25.5 rounds
    // to 26).
    assert_eq!(x_labels(&lines), ["1", "26", "50"], "{text}");
    // The loss axis spans train (4.0 ..= 4.98) and validation (4.5 ..= 5.3, at steps 10..50)
    // padded by 5% of the 1.3 range: 3.935 to 5.365.
    let y = y_labels(&lines);
    assert_eq!(y.len(), 3, "{y:?}\n{text}");
    assert!(
        (y[0] - 5.365).abs() < 0.006 && (y[2] - 3.935).abs() < 0.006,
        "{y:?}"
    );
    assert!(shows(&lines, "checkpoint none yet"), "{text}");
}

#[test]
fn a_run_whose_process_is_gone_says_it_is_not_running() {
    let dir = tempfile::tempdir().unwrap();
    recorded_run(dir.path(), 200, 50);
    let app = app_for(dir.path());
    let lines = screen(&app, fresh(&app) + Duration::from_secs(600));
    assert!(
        lines[0]
            .trim_end()
            .ends_with("not running: no update for 10m01s"),
        "{}",
        lines.join("\n")
    );
}

#[test]
fn a_finished_run_says_so_and_shows_its_checkpoint_and_sample() {
    let dir = tempfile::tempdir().unwrap();
    recorded_run(dir.path(), 60, 60);
    let ckpt = dir.path().join("ckpt-00000060");
    std::fs::create_dir(&ckpt).unwrap();
    std::fs::write(ckpt.join("meta.json"), "{}").unwrap();
    std::fs::write(dir.path().join(SAMPLE_FILE), "Once upon a time\nthere was").unwrap();
    let app = app_for(dir.path());
    let lines = screen(&app, fresh(&app) + Duration::from_secs(3600));
    let text = lines.join("\n");
    assert!(shows(&lines, "finished"), "{text}");
    assert!(shows(&lines, "step 60/60 (100%)"), "{text}");
    assert!(shows(&lines, "checkpoint ckpt-00000060"), "{text}");
    assert!(shows(&lines, "Once upon a time there was"), "{text}");
}

#[test]
fn a_truncated_and_rewritten_log_shows_the_rewritten_steps() {
    let dir = tempfile::tempdir().unwrap();
    recorded_run(dir.path(), 200, 50);
    let mut app = app_for(dir.path());
    assert!(shows(&screen(&app, fresh(&app)), "loss 4.0000"));
    // What `train --resume` does from a checkpoint at step 30: keep 1..=30, then append.
    let mut log = MetricsLog::resume(dir.path(), 30).unwrap();
    for step in 31..=36 {
        log.append(&record(step, 1.25)).unwrap();
    }
    app.refresh();
    assert_eq!(app.current().records().len(), 36);
    let lines = screen(&app, fresh(&app));
    let text = lines.join("\n");
    assert!(shows(&lines, "step 36/200 (18%)"), "{text}");
    assert!(shows(&lines, "loss 1.2500"), "{text}");
    assert!(shows(&lines, "36"), "{text}");
    assert!(!shows(&lines, "50/200"), "{text}");
}

#[test]
fn a_half_written_last_line_waits_for_its_end() {
    let dir = tempfile::tempdir().unwrap();
    recorded_run(dir.path(), 200, 20);
    let line = serde_json::to_string(&record(21, 0.5)).unwrap() + "\n";
    let (head, tail) = line.split_at(line.len() / 2);
    let path = dir.path().join("metrics.jsonl");
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap();
    write!(file, "{head}").unwrap();
    let mut app = app_for(dir.path());
    let lines = screen(&app, fresh(&app));
    assert!(shows(&lines, "step 20/200"), "{}", lines.join("\n"));
    assert!(shows(&lines, "loss 4.6000"), "{}", lines.join("\n"));
    write!(file, "{tail}").unwrap();
    app.refresh();
    let lines = screen(&app, fresh(&app));
    assert!(shows(&lines, "step 21/200"), "{}", lines.join("\n"));
    assert!(shows(&lines, "loss 0.5000"), "{}", lines.join("\n"));
}

#[test]
fn keys_toggle_log_scale_zoom_and_switch_runs() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    recorded_run(a.path(), 200, 100);
    recorded_run(b.path(), 300, 7);
    let mut app = App::new(vec![
        RunView::open(a.path()).unwrap(),
        RunView::open(b.path()).unwrap(),
    ]);
    let now = fresh(&app);
    assert!(shows(&screen(&app, now), "run 1/2"));
    app.key(Key::LogScale);
    let lines = screen(&app, now);
    assert!(shows(&lines, "loss (log scale)"), "{}", lines.join("\n"));
    assert!(shows(&lines, "log scale (on)"));
    // Log-scale labels are still losses: they bracket 3.0 (step 100) .. 5.3 (val at 10).
    let y = y_labels(&lines);
    assert!(
        y[0] > 5.3 && y[0] < 5.6 && y[2] < 3.0 && y[2] > 2.8,
        "{y:?}"
    );
    // Zooming in shows the newest half of the steps: 50.5 .. 100.
    app.key(Key::ZoomIn);
    assert_eq!(app.step_range(), (50.5, 100.0));
    app.key(Key::Left);
    assert_eq!(app.step_range(), (38.125, 87.625));
    app.key(Key::ZoomOut);
    assert_eq!(app.step_range(), (1.0, 100.0));
    app.key(Key::NextRun);
    let lines = screen(&app, now);
    assert!(shows(&lines, "run 2/2"), "{}", lines.join("\n"));
    assert!(shows(&lines, "step 7/300"), "{}", lines.join("\n"));
}

#[test]
fn a_run_without_metrics_is_starting_and_no_such_run_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    hold(dir.path());
    let app = app_for(dir.path());
    let lines = screen(&app, SystemTime::now());
    assert!(shows(&lines, "starting"), "{}", lines.join("\n"));
    assert!(shows(&lines, "waiting for the first step"));
    let missing = dir.path().join("nope");
    let err = RunView::open(&missing).err().unwrap().to_string();
    assert!(
        err.contains("no such run") && err.contains("--out"),
        "{err}"
    );
}
