//! Pictures of training metrics: train and validation loss (and optionally learning rate,
//! throughput, gradient norm) of one or more runs against step or tokens, as PNG or SVG.
//! The font is compiled in, so no system fonts (and no C font library) are needed.

use anetrain_model::train::StepMetrics;
use anyhow::{anyhow, bail, Context, Result};
use plotters::coord::Shift;
use plotters::prelude::*;
use std::path::Path;
use std::sync::Once;

/// DejaVu Sans (Bitstream Vera license, in `assets/fonts/DejaVuSans-LICENSE.txt`).
static FONT: &[u8] = include_bytes!("../assets/fonts/DejaVuSans.ttf");

/// Pixel width of every picture.
pub const WIDTH: u32 = 960;
/// Pixel height of one panel (the title adds [`TITLE_HEIGHT`]).
pub const PANEL_HEIGHT: u32 = 420;
/// Pixel height of the title strip.
pub const TITLE_HEIGHT: u32 = 40;

/// What the horizontal axis counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XAxis {
    /// Optimizer steps.
    Step,
    /// Training tokens consumed.
    Tokens,
}

impl XAxis {
    /// Parses `--x`.
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "step" => Ok(XAxis::Step),
            "tokens" => Ok(XAxis::Tokens),
            other => bail!("unknown --x `{other}`; choose step or tokens"),
        }
    }

    fn of(self, m: &StepMetrics) -> f64 {
        match self {
            XAxis::Step => m.step as f64,
            XAxis::Tokens => m.tokens as f64,
        }
    }

    fn label(self) -> &'static str {
        match self {
            XAxis::Step => "step",
            XAxis::Tokens => "tokens",
        }
    }
}

/// One panel of a picture.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Metric {
    /// Training loss, with validation loss where it was measured.
    Loss,
    /// Learning rate.
    Lr,
    /// Training tokens per second.
    TokensPerS,
    /// Gradient norm before clipping.
    GradNorm,
}

impl Metric {
    /// Parses a comma-separated `--metric` list; the loss panel always comes first.
    pub fn parse_list(s: &str) -> Result<Vec<Self>> {
        let mut out = vec![Metric::Loss];
        for name in s.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            let metric = match name {
                "loss" => Metric::Loss,
                "lr" => Metric::Lr,
                "tokens_per_s" => Metric::TokensPerS,
                "grad_norm" => Metric::GradNorm,
                other => bail!(
                    "unknown --metric `{other}`; choose from loss, lr, tokens_per_s, grad_norm"
                ),
            };
            if !out.contains(&metric) {
                out.push(metric);
            }
        }
        Ok(out)
    }

    fn label(self) -> &'static str {
        match self {
            Metric::Loss => "loss (nats/token)",
            Metric::Lr => "learning rate",
            Metric::TokensPerS => "tokens/s",
            Metric::GradNorm => "gradient norm",
        }
    }

    fn value(self, m: &StepMetrics) -> Option<f64> {
        let v = match self {
            Metric::Loss => f64::from(m.loss),
            Metric::Lr => f64::from(m.lr),
            Metric::TokensPerS => m.tokens_per_s,
            Metric::GradNorm => m.grad_norm?,
        };
        v.is_finite().then_some(v)
    }
}

/// One run's records under the name its legend entries carry.
pub struct RunMetrics<'a> {
    /// Legend name.
    pub name: String,
    /// The run's records, in step order.
    pub records: &'a [StepMetrics],
}

/// Colours of the runs, in order; a run's validation curve uses [`val_colour`] of its colour.
pub const PALETTE: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(255, 127, 14),
    RGBColor(23, 190, 207),
];

/// The training curve colour of run `i`.
pub fn train_colour(i: usize) -> RGBColor {
    PALETTE[i % PALETTE.len()]
}

/// The validation curve colour of run `i`: its training colour, darker.
pub fn val_colour(i: usize) -> RGBColor {
    let RGBColor(r, g, b) = train_colour(i);
    RGBColor(r / 2, g / 2, b / 2)
}

/// Draws `metrics` of `runs` against `x` into `out`, PNG or SVG by its extension.
pub fn render(out: &Path, runs: &[RunMetrics], metrics: &[Metric], x: XAxis) -> Result<()> {
    if runs.iter().all(|r| r.records.is_empty()) {
        bail!("there is nothing to plot yet: no run has a metrics record");
    }
    if let Some(dir) = out
        .parent()
        .filter(|d| !d.as_os_str().is_empty() && !d.is_dir())
    {
        bail!(
            "cannot write {}: the directory {} does not exist; create it or choose another --out",
            out.display(),
            dir.display()
        );
    }
    register_font()?;
    let height = TITLE_HEIGHT + PANEL_HEIGHT * metrics.len() as u32;
    let extension = out.extension().and_then(|e| e.to_str()).unwrap_or("");
    match extension.to_ascii_lowercase().as_str() {
        "png" => draw(
            BitMapBackend::new(out, (WIDTH, height)).into_drawing_area(),
            runs,
            metrics,
            x,
        ),
        "svg" => draw(
            SVGBackend::new(out, (WIDTH, height)).into_drawing_area(),
            runs,
            metrics,
            x,
        ),
        _ => bail!(
            "cannot tell the picture format of {}; give --out a .png or .svg name",
            out.display()
        ),
    }
    .with_context(|| format!("drawing {}", out.display()))
}

fn register_font() -> Result<()> {
    static ONCE: Once = Once::new();
    let mut result = Ok(());
    ONCE.call_once(|| {
        result = plotters::style::register_font("sans-serif", FontStyle::Normal, FONT)
            .map_err(|_| anyhow!("the embedded font cannot be read"));
    });
    result
}

fn draw<DB: DrawingBackend>(
    root: DrawingArea<DB, Shift>,
    runs: &[RunMetrics],
    metrics: &[Metric],
    x: XAxis,
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let fail = |e: DrawingAreaErrorKind<DB::ErrorType>| anyhow!("{e}");
    root.fill(&WHITE).map_err(fail)?;
    let names: Vec<&str> = runs.iter().map(|r| r.name.as_str()).collect();
    let title = format!("anetrain: {}", names.join(", "));
    let root = root.titled(&title, ("sans-serif", 22)).map_err(fail)?;
    for (panel, &metric) in root
        .split_evenly((metrics.len(), 1))
        .iter()
        .zip(metrics.iter())
    {
        draw_panel(panel, runs, metric, x).map_err(fail)?;
    }
    root.present().map_err(fail)
}

/// One curve: legend label, colour, points; validation points also get markers.
struct Curve {
    label: String,
    colour: RGBColor,
    points: Vec<(f64, f64)>,
    markers: bool,
}

fn curves(runs: &[RunMetrics], metric: Metric, x: XAxis) -> Vec<Curve> {
    let mut out = Vec::new();
    for (i, run) in runs.iter().enumerate() {
        let points = |value: &dyn Fn(&StepMetrics) -> Option<f64>| -> Vec<(f64, f64)> {
            run.records
                .iter()
                .filter_map(|m| Some((x.of(m), value(m)?)))
                .collect()
        };
        out.push(Curve {
            label: if metric == Metric::Loss {
                format!("{} train", run.name)
            } else {
                run.name.clone()
            },
            colour: train_colour(i),
            points: points(&|m| metric.value(m)),
            markers: false,
        });
        if metric == Metric::Loss {
            let val = points(&|m| m.val_loss.map(f64::from).filter(|v| v.is_finite()));
            if !val.is_empty() {
                out.push(Curve {
                    label: format!("{} val", run.name),
                    colour: val_colour(i),
                    points: val,
                    markers: true,
                });
            }
        }
    }
    out
}

/// `lo..hi` widened by a margin (and by 0.5 each way when all values are equal).
fn padded(values: impl Iterator<Item = f64>, margin: f64) -> std::ops::Range<f64> {
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    if !lo.is_finite() {
        return 0.0..1.0;
    }
    let pad = if hi > lo { (hi - lo) * margin } else { 0.5 };
    // Every metric drawn is non-negative: the padding must not suggest otherwise.
    let start = if lo >= 0.0 {
        (lo - pad).max(0.0)
    } else {
        lo - pad
    };
    start..(hi + pad)
}

fn draw_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    runs: &[RunMetrics],
    metric: Metric,
    x: XAxis,
) -> std::result::Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    let curves = curves(runs, metric, x);
    let all = || curves.iter().flat_map(|c| c.points.iter());
    let x_range = padded(all().map(|p| p.0), 0.0);
    let y_range = padded(all().map(|p| p.1), 0.05);
    let mut chart = ChartBuilder::on(area)
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(x_range, y_range)?;
    chart
        .configure_mesh()
        .x_desc(x.label())
        .y_desc(metric.label())
        .x_label_formatter(&|v| short_number(*v))
        .y_label_formatter(&|v| short_number(*v))
        .label_style(("sans-serif", 15))
        .axis_desc_style(("sans-serif", 17))
        .light_line_style(WHITE.mix(0.0))
        .draw()?;
    for curve in &curves {
        let colour = curve.colour;
        chart
            .draw_series(LineSeries::new(
                curve.points.iter().copied(),
                colour.stroke_width(2),
            ))?
            .label(curve.label.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], colour));
        if curve.markers {
            chart.draw_series(
                curve
                    .points
                    .iter()
                    .map(|&p| Circle::new(p, 3, colour.filled())),
            )?;
        }
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .label_font(("sans-serif", 15))
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()
}

/// `v` with few digits: 1.5k, 2.3M, 3e-4, 0.25.
pub fn short_number(v: f64) -> String {
    let a = v.abs();
    if a >= 1e9 {
        format!("{:.1}G", v / 1e9)
    } else if a >= 1e6 {
        format!("{:.1}M", v / 1e6)
    } else if a >= 1e4 {
        format!("{:.0}k", v / 1e3)
    } else if a == 0.0 || a >= 1.0 {
        let s = format!("{v:.2}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else if a >= 0.01 {
        format!("{v:.3}")
    } else {
        format!("{v:.1e}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(step: u64, loss: f32, val: Option<f32>) -> StepMetrics {
        StepMetrics {
            step,
            loss,
            lr: 1e-3,
            grad_norm: Some(1.0),
            loss_scale: 1.0,
            skipped: false,
            skipped_total: 0,
            tokens: step * 64,
            tokens_per_s: 1000.0,
            elapsed_s: step as f64,
            val_loss: val,
            perplexity: None,
        }
    }

    /// Loss falling linearly from `top` at step 1 to `top - 3` at step 100, validation 0.5
    /// above it every 20 steps.
    fn linear_run(top: f32) -> Vec<StepMetrics> {
        (1..=100)
            .map(|s| {
                let loss = top - 3.0 * (s - 1) as f32 / 99.0;
                record(s, loss, s.is_multiple_of(20).then_some(loss + 0.5))
            })
            .collect()
    }

    struct Picture {
        width: usize,
        height: usize,
        rgb: Vec<u8>,
    }

    fn decode(path: &Path) -> Picture {
        let decoder = png::Decoder::new(std::fs::File::open(path).unwrap());
        let mut reader = decoder.read_info().unwrap();
        let mut rgb = vec![0; reader.output_buffer_size()];
        let info = reader.next_frame(&mut rgb).unwrap();
        assert_eq!(info.color_type, png::ColorType::Rgb);
        Picture {
            width: info.width as usize,
            height: info.height as usize,
            rgb,
        }
    }

    /// For each column, the mean row of the pixels of exactly `colour`, over the longest
    /// stretch of neighbouring columns that have some (the curve, not its legend sample).
    fn curve_rows(p: &Picture, colour: RGBColor) -> Vec<(usize, f64)> {
        let RGBColor(r, g, b) = colour;
        let mut columns: Vec<(usize, f64)> = Vec::new();
        for x in 0..p.width {
            let rows: Vec<usize> = (0..p.height)
                .filter(|&y| p.rgb[(y * p.width + x) * 3..][..3] == [r, g, b])
                .collect();
            if !rows.is_empty() {
                columns.push((x, rows.iter().sum::<usize>() as f64 / rows.len() as f64));
            }
        }
        let mut best: &[(usize, f64)] = &[];
        let mut start = 0;
        for i in 1..=columns.len() {
            if i == columns.len() || columns[i].0 > columns[i - 1].0 + 3 {
                if i - start > best.len() {
                    best = &columns[start..i];
                }
                start = i;
            }
        }
        best.to_vec()
    }

    fn row_at(curve: &[(usize, f64)], x: usize) -> f64 {
        curve
            .iter()
            .min_by_key(|(cx, _)| cx.abs_diff(x))
            .map(|c| c.1)
            .unwrap()
    }

    #[test]
    fn one_run_draws_a_falling_straight_train_curve_and_validation_above_it() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("loss.png");
        let records = linear_run(4.0);
        let runs = [RunMetrics {
            name: "a".into(),
            records: &records,
        }];
        render(&out, &runs, &[Metric::Loss], XAxis::Step).unwrap();
        let p = decode(&out);
        assert_eq!((p.width, p.height), (960, 460));
        let train = curve_rows(&p, train_colour(0));
        // The curve spans most of the width, falls (rows grow downwards) and is straight:
        // halfway along it is halfway down.
        assert!(train.len() > p.width / 2, "{} columns", train.len());
        let (first, last) = (train[0], train[train.len() - 1]);
        assert!(
            last.1 - first.1 > p.height as f64 / 2.0,
            "{first:?} {last:?}"
        );
        let middle = row_at(&train, (first.0 + last.0) / 2);
        assert!((middle - (first.1 + last.1) / 2.0).abs() < 4.0, "{middle}");
        // Validation is 0.5 above the training loss, so drawn higher wherever both are.
        let val = curve_rows(&p, val_colour(0));
        assert!(!val.is_empty(), "no validation pixels");
        let x = val[val.len() / 2].0;
        assert!(row_at(&val, x) < row_at(&train, x) - 10.0);
    }

    #[test]
    fn several_runs_are_overlaid_each_in_its_colour() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("runs.png");
        let (high, low) = (linear_run(5.0), linear_run(4.0));
        let runs = [
            RunMetrics {
                name: "high".into(),
                records: &high,
            },
            RunMetrics {
                name: "low".into(),
                records: &low,
            },
        ];
        let panels = Metric::parse_list("lr,grad_norm").unwrap();
        render(&out, &runs, &panels, XAxis::Tokens).unwrap();
        let p = decode(&out);
        assert_eq!((p.width, p.height), (960, 40 + 3 * 420));
        // Only the loss panel (the top one) tells the runs apart; look there.
        let top = Picture {
            width: p.width,
            height: 460,
            rgb: p.rgb[..p.width * 460 * 3].to_vec(),
        };
        let (a, b) = (
            curve_rows(&top, train_colour(0)),
            curve_rows(&top, train_colour(1)),
        );
        assert!(a.len() > p.width / 2 && b.len() > p.width / 2);
        let x = (a[0].0 + a[a.len() - 1].0) / 2;
        assert!(
            row_at(&b, x) > row_at(&a, x) + 20.0,
            "the lower loss is drawn lower"
        );
    }

    #[test]
    fn svg_by_extension_and_unknown_extensions_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let records = linear_run(4.0);
        let runs = [RunMetrics {
            name: "a".into(),
            records: &records,
        }];
        let svg = dir.path().join("loss.svg");
        render(&svg, &runs, &[Metric::Loss], XAxis::Step).unwrap();
        let text = std::fs::read_to_string(&svg).unwrap();
        assert!(
            text.starts_with("<svg") && text.contains("a train"),
            "{text:.200}"
        );
        let err = render(
            &dir.path().join("loss.jpg"),
            &runs,
            &[Metric::Loss],
            XAxis::Step,
        );
        assert!(err.unwrap_err().to_string().contains(".png or .svg"));
        let err = render(
            &dir.path().join("no/loss.png"),
            &runs,
            &[Metric::Loss],
            XAxis::Step,
        );
        assert!(err.unwrap_err().to_string().contains("does not exist"));
        let err = Metric::parse_list("loss,nope").unwrap_err().to_string();
        assert!(err.contains("grad_norm"), "{err}");
    }
}
