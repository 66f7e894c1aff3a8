//! Runs that survive their users, through the built binary: kill -9 and resume, broken
//! checkpoints, two writers on one run directory, SIGINT/SIGTERM, divergence, and bad inputs
//! that must each get their message and exit code 2, never a panic or an abort.

mod common;
use common::anetrain;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use anetrain_model::hf::save_hf_dir;
use anetrain_model::train::Checkpoint;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_anetrain"))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A fast run of the tiny model on the CPU device.
fn train_args<'a>(out: &'a Path, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "train",
        "--out",
        out.to_str().unwrap(),
        "--device",
        "cpu",
        "--seq",
        "16",
        "--batch",
        "2",
        "--eval-every",
        "50",
        "--eval-batches",
        "1",
        "--sample-tokens",
        "0",
    ];
    if !extra.contains(&"--data") {
        args.extend(["--data", "synthetic:20000"]);
    }
    args.extend_from_slice(extra);
    args
}

fn train(out: &Path, extra: &[&str]) -> Output {
    anetrain(&train_args(out, extra))
}

/// Asserts a clean refusal: exit code 2, `needle` in stderr, no panic.
fn refused(o: &Output, needle: &str) {
    let err = text(&o.stderr);
    assert_eq!(
        o.status.code(),
        Some(2),
        "stderr: {err}\nstdout: {}",
        text(&o.stdout)
    );
    assert!(err.contains(needle), "expected `{needle}` in: {err}");
    assert!(!err.contains("panicked"), "{err}");
}

/// Starts a long training whose stdout is piped, and waits for its first step line.
// The caller waits for the child it gets back; the lint sees only this function.
#[allow(clippy::zombie_processes)]
fn start_long_run(out: &Path, extra: &[&str]) -> (Child, BufReader<std::process::ChildStdout>) {
    let mut args = train_args(out, &["--steps", "1000000", "--log-every", "1"]);
    args.extend_from_slice(extra);
    let mut child = bin()
        .args(&args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    loop {
        line.clear();
        if stdout.read_line(&mut line).unwrap() == 0 {
            let status = child.wait().unwrap();
            panic!("the run ended early ({status})");
        }
        if line.starts_with("step") {
            return (child, stdout);
        }
    }
}

fn signal(child: &Child, name: &str) {
    let status = Command::new("kill")
        .args([&format!("-{name}"), &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

fn rest_of(mut stdout: BufReader<std::process::ChildStdout>) -> String {
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut rest).unwrap();
    rest
}

fn checkpoint_dirs(run: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(run)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with("ckpt-"))
        .collect();
    names.sort();
    names
}

#[test]
fn kill_9_then_resume_ends_bit_identical_to_an_uninterrupted_run() {
    let dir = tempfile::tempdir().unwrap();
    let (whole, killed) = (dir.path().join("whole"), dir.path().join("killed"));
    let flags = ["--steps", "300", "--save-every", "1", "--keep-last", "2"];
    let o = train(&whole, &flags);
    assert!(o.status.success(), "{}", text(&o.stderr));

    let mut child = bin()
        .args(train_args(&killed, &flags))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while !killed.join("ckpt-00000003").is_dir() {
        assert!(started.elapsed() < Duration::from_secs(60), "no checkpoint");
        std::thread::sleep(Duration::from_millis(1));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        !killed.join("ckpt-00000300").exists(),
        "the run finished before it was killed; the test proves nothing"
    );
    assert!(killed.join(".lock").is_file(), "kill -9 leaves the lock");

    let mut args = flags.to_vec();
    args.push("--resume");
    let o = train(&killed, &args);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(
        text(&o.stdout).contains("no longer running; taking over"),
        "{}",
        text(&o.stdout)
    );
    assert!(
        !killed.join(".lock").exists(),
        "the lock is released at the end"
    );
    let read = |run: &Path| std::fs::read(run.join("ckpt-00000300/model.safetensors")).unwrap();
    assert!(read(&whole) == read(&killed), "resumed weights differ");
}

#[test]
fn a_broken_latest_checkpoint_is_skipped_naming_it_and_why() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let o = train(&run, &["--steps", "3", "--save-every", "1"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    std::fs::remove_file(run.join("ckpt-00000003/model.safetensors")).unwrap();

    let o = train(&run, &["--steps", "3", "--save-every", "1", "--resume"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let out = text(&o.stdout);
    assert!(
        out.contains("skipping checkpoint")
            && out.contains("ckpt-00000003")
            && out.contains("model.safetensors"),
        "{out}"
    );
    assert!(
        out.contains("resuming") && out.contains("ckpt-00000002"),
        "{out}"
    );
    assert!(
        run.join("ckpt-00000003.broken").is_dir(),
        "the broken one is kept aside"
    );
    // Step 3 was trained again, and the new checkpoint loads.
    Checkpoint::load(&run.join("ckpt-00000003")).unwrap();
}

#[test]
fn a_meta_step_that_disagrees_with_the_directory_name_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let o = train(&run, &["--steps", "2"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let meta = run.join("ckpt-00000002/meta.json");
    let json = std::fs::read_to_string(&meta).unwrap();
    std::fs::write(&meta, json.replace("\"step\": 2", "\"step\": 1")).unwrap();
    let o = train(&run, &["--steps", "4", "--resume"]);
    refused(&o, "records step 1 but its directory is named for step 2");
}

#[test]
fn out_inside_a_checkpoint_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let o = train(&run, &["--steps", "1"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let inside = run.join("ckpt-00000001");
    refused(
        &train(&inside, &["--steps", "1"]),
        "is inside the checkpoint",
    );
    refused(
        &train(&inside.join("sub"), &["--steps", "1"]),
        "is inside the checkpoint",
    );
}

#[test]
fn a_second_writer_fails_naming_the_first_and_sigterm_saves_and_exits_143() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let (child, stdout) = start_long_run(&run, &[]);
    let second = train(&run, &["--steps", "2", "--resume"]);
    refused(
        &second,
        &format!("in use by another anetrain (pid {})", child.id()),
    );
    let second = train(&run, &["--steps", "2"]);
    refused(&second, &format!("pid {}", child.id()));

    signal(&child, "TERM");
    let rest = rest_of(stdout);
    let status = { child }.wait().unwrap();
    assert_eq!(status.code(), Some(143), "{rest}");
    assert!(rest.contains("terminated (SIGTERM): saved step"), "{rest}");
    let saved = checkpoint_dirs(&run);
    assert_eq!(saved.len(), 1, "{saved:?}");
    Checkpoint::load(&run.join(&saved[0])).unwrap();
    assert!(!run.join(".lock").exists());
}

#[test]
fn sigint_saves_and_exits_130_and_the_run_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let (child, stdout) = start_long_run(&run, &[]);
    signal(&child, "INT");
    let rest = rest_of(stdout);
    let status = { child }.wait().unwrap();
    assert_eq!(status.code(), Some(130), "{rest}");
    assert!(rest.contains("interrupted (Ctrl-C): saved step"), "{rest}");
    let saved = checkpoint_dirs(&run);
    let step: u64 = saved[0]["ckpt-".len()..].parse().unwrap();
    let total = (step + 1).to_string();
    let o = train(&run, &["--steps", &total, "--resume"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(run.join(format!("ckpt-{:08}", step + 1)).is_dir());
}

#[test]
fn a_signal_while_setting_up_exits_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    // Generating a large synthetic corpus is the long setup here.
    let mut child = bin()
        .args(train_args(
            &run,
            &["--data", "synthetic:200000000", "--steps", "1"],
        ))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    signal(&child, "INT");
    let started = Instant::now();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130));
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn a_diverging_run_stops_saying_what_to_change() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let o = train(
        &run,
        &["--steps", "100", "--lr", "1e30", "--max-skipped-steps", "3"],
    );
    refused(&o, "the run diverged: the last 3 steps");
    assert!(
        text(&o.stderr).contains("lower --lr"),
        "{}",
        text(&o.stderr)
    );
}

/// A Hugging Face directory of the tiny model (2 layers, untied), made by a short run.
fn hf_dir(root: &Path) -> PathBuf {
    let run = root.join("src-run");
    let o = train(&run, &["--steps", "1"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let ckpt = Checkpoint::load(&run.join("ckpt-00000001")).unwrap();
    let hf = root.join("hf");
    save_hf_dir(&hf, &ckpt.config, &ckpt.params, None).unwrap();
    hf
}

fn edit_config(hf: &Path, edit: impl Fn(&mut serde_json::Value)) -> PathBuf {
    let mut n = 0;
    let mut dst = hf.with_file_name("edited-0");
    while dst.exists() {
        n += 1;
        dst = hf.with_file_name(format!("edited-{n}"));
    }
    std::fs::create_dir_all(&dst).unwrap();
    std::fs::copy(hf.join("model.safetensors"), dst.join("model.safetensors")).unwrap();
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(hf.join("config.json")).unwrap()).unwrap();
    edit(&mut config);
    std::fs::write(dst.join("config.json"), config.to_string()).unwrap();
    dst
}

#[test]
fn configs_that_disagree_with_their_weights_are_refused_before_allocating() {
    let dir = tempfile::tempdir().unwrap();
    let hf = hf_dir(dir.path());
    let out = dir.path().join("out");
    let init = |d: &Path| train(&out, &["--steps", "1", "--init-from", d.to_str().unwrap()]);
    let cases: [(&str, serde_json::Value, &str); 5] = [
        (
            "hidden_size",
            serde_json::json!(u64::MAX),
            "more parameters than any machine can hold",
        ),
        (
            "vocab_size",
            serde_json::json!(2_000_000_000u64),
            "model.embed_tokens.weight",
        ),
        (
            "num_hidden_layers",
            serde_json::json!(100_000),
            "`model.layers.2.input_layernorm.weight` is missing",
        ),
        (
            "num_hidden_layers",
            serde_json::json!(1),
            "holds 2 layers but the config says n_layers (num_hidden_layers) = 1",
        ),
        (
            "tie_word_embeddings",
            serde_json::json!(true),
            "set tie_word_embeddings to false",
        ),
    ];
    for (field, value, needle) in cases {
        let edited = edit_config(&hf, |c| c[field] = value.clone());
        refused(&init(&edited), needle);
    }
}

#[test]
fn non_finite_weights_are_refused_at_load_naming_the_tensor() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("src-run");
    let o = train(&run, &["--steps", "1"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let mut ckpt = Checkpoint::load(&run.join("ckpt-00000001")).unwrap();
    anetrain_model::params::Linear::UpProj
        .get_mut(&mut ckpt.params.layers[1])
        .data_mut()[7] = f32::NAN;
    let hf = dir.path().join("nan-hf");
    save_hf_dir(&hf, &ckpt.config, &ckpt.params, None).unwrap();
    let out = dir.path().join("out");
    let o = train(&out, &["--steps", "1", "--init-from", hf.to_str().unwrap()]);
    refused(&o, "tensor `model.layers.1.mlp.up_proj.weight`");
    assert!(
        text(&o.stderr).contains("NaN at element 7"),
        "{}",
        text(&o.stderr)
    );
}

#[test]
fn bad_inputs_get_their_message_and_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let out_s = out.to_str().unwrap();
    refused(
        &train(&out, &["--lr", "-1"]),
        "--lr -1 must be a positive number",
    );
    let o = train(&out, &["--lr", "-1"]);
    assert!(
        !text(&o.stderr).contains("invalid model config"),
        "{}",
        text(&o.stderr)
    );
    refused(
        &train(&out, &["--data", "synthetic:99999999999999"]),
        "synthetic:99999999999999 asks for more than",
    );

    let short = dir.path().join("short.txt");
    std::fs::write(&short, "tiny").unwrap();
    let o = train(
        &out,
        &["--val-data", short.to_str().unwrap(), "--steps", "200"],
    );
    refused(&o, "--val-data");
    assert!(
        !text(&o.stdout).contains("step "),
        "failed before step 1: {}",
        text(&o.stdout)
    );
    let missing = dir.path().join("missing.txt");
    refused(
        &train(&out, &["--val-data", missing.to_str().unwrap()]),
        &format!("--val-data {}", missing.display()),
    );
    let o = train(&out, &["--val-data", missing.to_str().unwrap()]);
    assert_eq!(
        text(&o.stderr).matches("No such file").count(),
        1,
        "the OS error is printed once: {}",
        text(&o.stderr)
    );

    // llama2.c's versioned export: magic "ak42", version 1, then a header and weights.
    let v1 = dir.path().join("v1.bin");
    let mut bytes = 0x616b_3432u32.to_le_bytes().to_vec();
    bytes.extend(1u32.to_le_bytes());
    bytes.resize(256 + 4096, 0);
    std::fs::write(&v1, bytes).unwrap();
    refused(
        &anetrain(&["train", "--out", out_s, "--init-from", v1.to_str().unwrap()]),
        "unsupported llama2.c version 1",
    );
    assert!(
        !out.exists(),
        "a refused new run leaves no directory behind"
    );
}

#[test]
fn sizes_beyond_this_machine_are_refused_before_allocating() {
    let dir = tempfile::tempdir().unwrap();
    // 2^40 elements in and as many out: 8 TiB as f32, more than any machine has.
    let big = dir.path().join("big.mil");
    let program = "program(1.3)\n{\n    func main<ios18>(tensor<fp16, [1, 1048576, 1, 1048576]> x) {\n        \
         tensor<fp16, [1, 1048576, 1, 1048576]> y = relu(x = x)[name = string(\"y\")];\n    \
         } -> (y);\n}\n";
    std::fs::write(&big, program).unwrap();
    refused(
        &anetrain(&["mil", "run", big.to_str().unwrap(), "--device", "cpu"]),
        "the program (its inputs and outputs) needs",
    );
    refused(
        &anetrain(&["bench", "peak", "--channels", "100000", "--device", "cpu"]),
        "pass smaller --channels",
    );
    refused(
        &anetrain(&["doctor", "--seq", "100000"]),
        "--seq 100000 must be between 1 and the model's max_seq_len 256",
    );
}
