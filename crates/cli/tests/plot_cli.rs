//! `anetrain plot` and the `loss.png` of `anetrain train`, end to end on tiny real runs.

mod common;
use common::{anetrain, stderr};

use std::path::Path;

use anetrain_model::train::metrics::read_metrics;

/// Trains the tiny model for 8 steps on the reference engine, checkpointing at step 4.
fn tiny_run(out: &Path, seed: &str) {
    let o = anetrain(&[
        "train",
        "--out",
        out.to_str().unwrap(),
        "--data",
        "synthetic:20000",
        "--seq",
        "16",
        "--batch",
        "2",
        "--steps",
        "8",
        "--save-every",
        "4",
        "--eval-every",
        "4",
        "--eval-batches",
        "1",
        "--sample-tokens",
        "4",
        "--device",
        "reference",
        "--seed",
        seed,
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
}

/// A decoded RGB picture.
struct Picture {
    width: usize,
    height: usize,
    rgb: Vec<u8>,
}

fn decode(path: &Path) -> Picture {
    let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut reader = png::Decoder::new(file).read_info().unwrap();
    let mut rgb = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut rgb).unwrap();
    assert_eq!(info.color_type, png::ColorType::Rgb);
    Picture {
        width: info.width as usize,
        height: info.height as usize,
        rgb,
    }
}

impl Picture {
    /// `(column, row)` of every pixel of exactly `colour` in rows `rows`.
    fn pixels(&self, colour: [u8; 3], rows: std::ops::Range<usize>) -> Vec<(usize, usize)> {
        rows.flat_map(|y| (0..self.width).map(move |x| (x, y)))
            .filter(|&(x, y)| self.rgb[(y * self.width + x) * 3..][..3] == colour)
            .collect()
    }
}

/// The first two run colours of the plots (matplotlib's first two).
const RUN_COLOURS: [[u8; 3]; 2] = [[31, 119, 180], [214, 39, 40]];

/// Whether the curve of `colour` goes the way the losses do: the mean row of its leftmost
/// tenth against its rightmost tenth (rows grow downwards).
fn falls_like(p: &Picture, colour: [u8; 3], first_loss: f32, last_loss: f32) -> bool {
    let px = p.pixels(colour, 0..460);
    let (lo, hi) = px
        .iter()
        .fold((usize::MAX, 0), |(a, b), &(x, _)| (a.min(x), b.max(x)));
    let tenth = (hi - lo) / 10;
    let mean_row = |keep: &dyn Fn(usize) -> bool| {
        let rows: Vec<usize> = px.iter().filter(|p| keep(p.0)).map(|p| p.1).collect();
        rows.iter().sum::<usize>() as f64 / rows.len() as f64
    };
    let (left, right) = (
        mean_row(&|x| x <= lo + tenth),
        mean_row(&|x| x >= hi - tenth),
    );
    (left < right) == (first_loss > last_loss)
}

#[test]
fn train_writes_loss_png_and_plot_overlays_runs_with_extra_panels() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    tiny_run(&a, "1");
    tiny_run(&b, "2");

    let own = decode(&a.join("loss.png"));
    assert_eq!((own.width, own.height), (960, 460));
    assert!(own.pixels(RUN_COLOURS[0], 0..460).len() > 200);
    assert!(
        std::fs::read_to_string(a.join("sample.txt")).is_ok(),
        "train saves its sample for the dashboard"
    );

    let out = dir.path().join("both.png");
    let o = anetrain(&[
        "plot",
        a.to_str().unwrap(),
        b.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--metric",
        "lr,tokens_per_s",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let p = decode(&out);
    assert_eq!((p.width, p.height), (960, 40 + 3 * 420));
    for (run, colour) in [(&a, RUN_COLOURS[0]), (&b, RUN_COLOURS[1])] {
        let m = read_metrics(&run.join("metrics.jsonl")).unwrap();
        assert_eq!(m.len(), 8);
        assert!(
            falls_like(&p, colour, m[0].loss, m[7].loss),
            "the curve of {} does not follow its losses",
            run.display()
        );
        // The learning-rate panel (the second) holds a curve of each run too.
        assert!(!p.pixels(colour, 460..880).is_empty());
    }
}

#[test]
fn plot_refuses_what_is_not_a_run_and_unknown_options() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("x.png");
    let o = anetrain(&[
        "plot",
        dir.path().to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("is not a training run"),
        "{}",
        stderr(&o)
    );
    std::fs::write(dir.path().join("metrics.jsonl"), "").unwrap();
    let o = anetrain(&[
        "plot",
        dir.path().to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(stderr(&o).contains("has no steps yet"), "{}", stderr(&o));
    for (flag, value, hint) in [
        ("--x", "epochs", "step or tokens"),
        ("--metric", "speed", "tokens_per_s"),
    ] {
        let o = anetrain(&[
            "plot",
            dir.path().to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            flag,
            value,
        ]);
        assert_eq!(o.status.code(), Some(2));
        assert!(stderr(&o).contains(hint), "{}", stderr(&o));
    }
    assert!(!out.exists());
}
