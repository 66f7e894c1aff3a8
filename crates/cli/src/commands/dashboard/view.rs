//! Drawing one dashboard frame from the [`App`] state; no terminal I/O, so tests render it
//! into ratatui's `TestBackend`.

use super::state::{App, RunView};
use crate::plot::short_number;
use anetrain_model::train::{Activity, StepMetrics};
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::symbols::Marker;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Axis, Block, Borders, Chart, Dataset, Gauge, GraphType, Paragraph, Wrap};
use ratatui::Frame;
use std::time::SystemTime;

const TRAIN: Color = Color::Cyan;
const VAL: Color = Color::Yellow;

/// Draws the dashboard at the wall-clock time `now` (which decides whether runs are live).
pub fn draw(frame: &mut Frame, app: &App, now: SystemTime) {
    let run = app.current();
    let sample_rows = if run.sample.is_some() { 3 } else { 0 };
    let [title, info, progress, chart, stats, sample, help] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Min(6),
        Constraint::Length(4),
        Constraint::Length(sample_rows),
        Constraint::Length(1),
    ])
    .areas(frame.area());
    frame.render_widget(title_line(app, now), title);
    frame.render_widget(info_line(run), info);
    draw_progress(frame, run, progress);
    draw_chart(frame, app, chart);
    frame.render_widget(stats_block(run), stats);
    if let Some(text) = &run.sample {
        let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
        frame.render_widget(
            Paragraph::new(text)
                .wrap(Wrap { trim: true })
                .block(Block::default().borders(Borders::TOP).title("last sample")),
            sample,
        );
    }
    frame.render_widget(help_line(app), help);
}

/// The run's state in words, with the colour it is shown in.
pub fn activity_text(run: &RunView, now: SystemTime) -> (String, Color) {
    if let Some(problem) = &run.problem {
        return (format!("cannot read metrics: {problem}"), Color::Red);
    }
    match run.activity(now) {
        Activity::Starting => ("starting: no steps yet".into(), Color::Yellow),
        Activity::Running => (
            format!("running (pid {})", run.holder.unwrap_or_default()),
            Color::Green,
        ),
        Activity::Finished => ("finished".into(), Color::Blue),
        Activity::Stopped { idle } => (
            format!(
                "not running: no update for {}",
                duration(idle.as_secs_f64())
            ),
            Color::Red,
        ),
    }
}

fn title_line(app: &App, now: SystemTime) -> Paragraph<'static> {
    let run = app.current();
    let (state, colour) = activity_text(run, now);
    let mut spans = vec![Span::styled(
        " anetrain ",
        Style::default().add_modifier(Modifier::REVERSED),
    )];
    if app.runs.len() > 1 {
        spans.push(Span::raw(format!(
            " run {}/{}",
            app.selected + 1,
            app.runs.len()
        )));
    }
    spans.push(Span::styled(
        format!(" {} ", run.name()),
        Style::default().add_modifier(Modifier::BOLD),
    ));
    spans.push(Span::styled(state, Style::default().fg(colour)));
    Paragraph::new(Line::from(spans))
}

fn info_line(run: &RunView) -> Paragraph<'static> {
    let device = run.info.device.as_deref().unwrap_or("unknown device");
    let model = run.info.model.as_deref().unwrap_or("unknown model");
    Paragraph::new(format!(" {model} | {device}"))
}

fn draw_progress(frame: &mut Frame, run: &RunView, area: Rect) {
    let step = run.records().last().map_or(0, |m| m.step);
    let (ratio, label) = match run.info.total_steps.filter(|&t| t > 0) {
        Some(total) => (
            (step as f64 / total as f64).clamp(0.0, 1.0),
            format!(
                "step {step}/{total} ({:.0}%)",
                100.0 * step as f64 / total as f64
            ),
        ),
        None => (0.0, format!("step {step}")),
    };
    frame.render_widget(
        Gauge::default()
            .ratio(ratio)
            .label(label)
            .gauge_style(Style::default().fg(Color::Blue).bg(Color::Black)),
        area,
    );
}

/// The `(x, y)` points of one series inside the step range, `y` through the axis transform.
fn points(
    records: &[StepMetrics],
    (lo, hi): (f64, f64),
    value: impl Fn(&StepMetrics) -> Option<f32>,
    log: bool,
) -> Vec<(f64, f64)> {
    records
        .iter()
        .filter(|m| (lo..=hi).contains(&(m.step as f64)))
        .filter_map(|m| {
            let v = f64::from(value(m)?);
            let y = if log { v.log10() } else { v };
            y.is_finite().then_some((m.step as f64, y))
        })
        .collect()
}

fn draw_chart(frame: &mut Frame, app: &App, area: Rect) {
    let records = app.current().records();
    let range = app.step_range();
    let train = points(records, range, |m| Some(m.loss), app.log_scale);
    let val = points(records, range, |m| m.val_loss, app.log_scale);
    let (y_lo, y_hi) = train
        .iter()
        .chain(&val)
        .map(|p| p.1)
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), y| {
            (lo.min(y), hi.max(y))
        });
    let (y_lo, y_hi) = if y_lo.is_finite() {
        let pad = ((y_hi - y_lo) * 0.05).max(1e-6);
        // A loss is never negative: padding must not suggest it could be.
        let floor = if app.log_scale || y_lo < 0.0 {
            f64::NEG_INFINITY
        } else {
            0.0
        };
        ((y_lo - pad).max(floor), y_hi + pad)
    } else {
        (0.0, 1.0)
    };
    let shown = |y: f64| short_number(if app.log_scale { 10f64.powf(y) } else { y });
    let datasets = vec![
        Dataset::default()
            .name("train")
            .marker(Marker::Braille)
            .graph_type(GraphType::Line)
            .style(Style::default().fg(TRAIN))
            .data(&train),
        Dataset::default()
            .name("val")
            .marker(Marker::Dot)
            .graph_type(GraphType::Scatter)
            .style(Style::default().fg(VAL))
            .data(&val),
    ];
    let title = if app.log_scale {
        "loss (log scale)"
    } else {
        "loss"
    };
    let chart = Chart::new(datasets)
        .block(Block::default().borders(Borders::ALL).title(title))
        .x_axis(
            Axis::default()
                .title("step")
                .bounds([range.0, range.1])
                .labels([
                    short_number(range.0.round()),
                    short_number(((range.0 + range.1) / 2.0).round()),
                    short_number(range.1.round()),
                ]),
        )
        .y_axis(Axis::default().bounds([y_lo, y_hi]).labels([
            shown(y_lo),
            shown((y_lo + y_hi) / 2.0),
            shown(y_hi),
        ]));
    frame.render_widget(chart, area);
}

fn stats_block(run: &RunView) -> Paragraph<'static> {
    let records = run.records();
    let Some(m) = records.last() else {
        return Paragraph::new(" waiting for the first step...")
            .block(Block::default().borders(Borders::TOP));
    };
    let val = records
        .iter()
        .rev()
        .find_map(|r| Some((r.step, r.val_loss?)))
        .map_or("-".into(), |(step, v)| {
            format!("{v:.4} (ppl {:.2}, step {step})", v.exp())
        });
    let grad = m.grad_norm.map_or("overflow".into(), |g| format!("{g:.3}"));
    let eta = run.eta_s().map_or("-".into(), duration);
    let checkpoint = run.checkpoint.as_deref().unwrap_or("none yet");
    let label = |s: &'static str| Span::styled(s, Style::default().fg(Color::DarkGray));
    let lines = vec![
        Line::from(vec![
            label(" loss "),
            Span::styled(format!("{:.4}", m.loss), Style::default().fg(TRAIN)),
            label("  val "),
            Span::styled(val, Style::default().fg(VAL)),
        ]),
        Line::from(vec![
            label(" tok/s "),
            Span::raw(format!("{:.0}", m.tokens_per_s)),
            label("  lr "),
            Span::raw(format!("{:.2e}", m.lr)),
            label("  grad norm "),
            Span::raw(grad),
            label("  loss scale "),
            Span::raw(format!("{}", m.loss_scale)),
            label("  skipped "),
            Span::raw(format!("{}", m.skipped_total)),
        ]),
        Line::from(vec![
            label(" elapsed "),
            Span::raw(duration(m.elapsed_s)),
            label("  eta "),
            Span::raw(eta),
            label("  tokens "),
            Span::raw(short_number(m.tokens as f64)),
            label("  checkpoint "),
            Span::raw(checkpoint.to_string()),
        ]),
    ];
    Paragraph::new(lines).block(Block::default().borders(Borders::TOP))
}

fn help_line(app: &App) -> Paragraph<'static> {
    let log = if app.log_scale { "on" } else { "off" };
    let zoom = match app.window {
        Some(_) => "zoomed",
        None => "all steps",
    };
    Paragraph::new(format!(
        " q quit  l log scale ({log})  tab next run  <- -> pan  up/down zoom ({zoom})"
    ))
    .style(Style::default().fg(Color::DarkGray))
}

/// Seconds as `1h02m`, `3m05s` or `12s`.
pub fn duration(s: f64) -> String {
    let s = s.max(0.0).round() as u64;
    match (s / 3600, s / 60 % 60, s % 60) {
        (0, 0, sec) => format!("{sec}s"),
        (0, min, sec) => format!("{min}m{sec:02}s"),
        (h, min, _) => format!("{h}h{min:02}m"),
    }
}
