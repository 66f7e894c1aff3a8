//! `anetrain dashboard` and `train --dashboard` through the binary, where no terminal is:
//! the error paths, and the fallback to progress lines.

mod common;
use common::{anetrain, stderr};

#[test]
fn dashboard_of_no_such_run_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-run");
    let o = anetrain(&["dashboard", missing.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(
        err.contains("no such run") && err.contains("no-run"),
        "{err}"
    );
}

#[test]
fn dashboard_without_a_terminal_says_so_and_points_to_plot() {
    let dir = tempfile::tempdir().unwrap();
    let o = anetrain(&["dashboard", dir.path().to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(
        err.contains("needs a terminal") && err.contains("anetrain plot"),
        "{err}"
    );
}

#[test]
fn train_dashboard_without_a_terminal_prints_progress_lines() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let o = anetrain(&[
        "train",
        "--out",
        run.to_str().unwrap(),
        "--data",
        "synthetic:20000",
        "--seq",
        "16",
        "--batch",
        "2",
        "--steps",
        "2",
        "--sample-tokens",
        "0",
        "--device",
        "reference",
        "--dashboard",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("needs a terminal") && out.contains("progress lines"),
        "{out}"
    );
    assert!(out.contains("step      1 loss"), "{out}");
}
