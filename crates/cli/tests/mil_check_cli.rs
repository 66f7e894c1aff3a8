//! `anetrain mil check --capabilities FILE`: rules measured by `doctor --probe` replace the
//! catalog's guesses, so a disputed rule becomes a violation or disappears on this chip.

use std::path::Path;
use std::process::Command;

/// A program whose only finding on M4 is the disputed `gelu` rule (unknown by default).
const GELU_PROGRAM: &str = r#"program(1.3)
{
    func main<ios18>(tensor<fp16, [1, 1, 256, 256]> x) {
        bool no = const()[name = string("no"), val = bool(false)];
        tensor<fp16, [1, 1, 256, 256]> m = matmul(transpose_x = no, transpose_y = no, x = x, y = x)[name = string("m")];
        tensor<fp16, [1, 1, 256, 256]> y = gelu(x = m)[name = string("y")];
    } -> (y);
}
"#;

/// A capability file for an M4 whose baseline passed and whose `gelu` probe did as `gelu_ok` says.
fn capabilities(gelu_ok: bool) -> String {
    format!(
        r#"{{"version": 1, "chip": "H16G", "macos": "26.1", "probes": [
            {{"op": "baseline", "dtype": "fp16", "width": 64, "compiled": true, "ran": true}},
            {{"op": "gelu", "dtype": "fp16", "width": 64, "compiled": {gelu_ok}, "ran": {gelu_ok}}}
        ]}}"#
    )
}

fn check(dir: &Path, extra: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_anetrain"))
        .args([
            "mil",
            "check",
            dir.join("g.mil").to_str().unwrap(),
            "--chip",
            "m4",
        ])
        .args(extra)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn measured_capabilities_settle_a_disputed_rule() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("g.mil"), GELU_PROGRAM).unwrap();
    let (code, text) = check(dir.path(), &[]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("unknown on M4"), "{text}");

    let failed = dir.path().join("failed.json");
    std::fs::write(&failed, capabilities(false)).unwrap();
    let (code, text) = check(dir.path(), &["--capabilities", failed.to_str().unwrap()]);
    assert_eq!(code, 1, "a measured failure is a violation: {text}");
    assert!(text.contains("rule gelu"), "{text}");

    let passed = dir.path().join("passed.json");
    std::fs::write(&passed, capabilities(true)).unwrap();
    let (code, text) = check(dir.path(), &["--capabilities", passed.to_str().unwrap()]);
    assert_eq!(code, 0, "{text}");
    assert!(
        !text.contains("gelu"),
        "a measured pass removes the finding: {text}"
    );
}

#[test]
fn capabilities_from_another_chip_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("g.mil"), GELU_PROGRAM).unwrap();
    let file = dir.path().join("m4.json");
    std::fs::write(&file, capabilities(false)).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_anetrain"))
        .args([
            "mil",
            "check",
            dir.path().join("g.mil").to_str().unwrap(),
            "--chip",
            "m1",
        ])
        .args(["--capabilities", file.to_str().unwrap()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(text.contains("--chip"), "{text}");
}
