//! The C test programs in `tests/c/`, compiled with the system C compiler against
//! `include/anetrain.h`, linked with the freshly built `libanetrain`, and run.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Where cargo put the `libanetrain` it built for this test run: beside the test executable
/// (`target/<profile>/deps`), or one level up when it was built on its own.
fn library_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test knows its own path");
    let deps = exe.parent().expect("the test executable is in a directory");
    let names = ["libanetrain.so", "libanetrain.dylib"];
    let found = [Some(deps), deps.parent()]
        .into_iter()
        .flatten()
        .find(|dir| names.iter().any(|n| dir.join(n).exists()))
        .expect("cargo builds libanetrain before the tests")
        .to_path_buf();
    found
}

/// Compiles `tests/c/<name>.c` and runs it with `args`, returning its standard output; fails
/// the test with the program's output when it exits non-zero.
fn run_c(name: &str, args: &[&str]) -> String {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let scratch = tempfile::tempdir().expect("a scratch directory");
    let exe = scratch.path().join(name);
    let lib = library_dir();
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let compiled = Command::new(&cc)
        .args(["-Wall", "-Wextra", "-Werror", "-O1"])
        .arg("-I")
        .arg(crate_dir.join("include"))
        .arg("-I")
        .arg(crate_dir.join("tests/c"))
        .arg(crate_dir.join(format!("tests/c/{name}.c")))
        .arg("-o")
        .arg(&exe)
        .arg("-L")
        .arg(&lib)
        .arg("-lanetrain")
        .arg(format!("-Wl,-rpath,{}", lib.display()))
        .arg("-lm")
        .output()
        .unwrap_or_else(|e| panic!("cannot run the C compiler `{cc}`: {e}"));
    assert!(
        compiled.status.success(),
        "compiling tests/c/{name}.c failed:\n{}",
        String::from_utf8_lossy(&compiled.stderr)
    );
    let ran = Command::new(&exe)
        .args(args)
        .arg(scratch.path())
        .output()
        .expect("the compiled test runs");
    let stdout = String::from_utf8_lossy(&ran.stdout).into_owned();
    assert!(
        ran.status.success(),
        "tests/c/{name}.c failed ({}):\n{stdout}\n{}",
        ran.status,
        String::from_utf8_lossy(&ran.stderr)
    );
    print!("{stdout}");
    stdout
}

#[test]
fn c_kernel_on_the_cpu_matches_the_c_reference_and_errors_carry_messages() {
    let out = run_c("kernel", &[]);
    assert!(out.contains("kernel: all checks passed"), "{out}");
}

#[test]
fn c_model_loss_on_the_shared_fixture_matches_transformers() {
    let fixture = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/fixtures/llama_mha"
    );
    if !Path::new(fixture).join("meta.json").exists() {
        println!("skipped: {fixture} is absent (the shared fixtures are not here)");
        return;
    }
    let out = run_c("model_shared", &[fixture]);
    assert!(out.contains("model: all checks passed"), "{out}");
}

#[test]
fn c_train_save_reload_generate_and_export_a_tiny_model() {
    let out = run_c("train_generate", &[]);
    assert!(out.contains("train_generate: all checks passed"), "{out}");
}

#[test]
fn c_resumed_run_continues_with_the_uninterrupted_runs_losses() {
    let out = run_c("resume", &[]);
    assert!(out.contains("resume: all checks passed"), "{out}");
}

#[test]
fn c_lora_run_from_json_settings_trains_and_saves_only_the_adapter() {
    let out = run_c("lora_train", &[]);
    assert!(out.contains("lora_train: all checks passed"), "{out}");
}
