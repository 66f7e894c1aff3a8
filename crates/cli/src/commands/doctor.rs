//! `anetrain doctor`: what this machine's Neural Engine is, and whether every kernel of a model
//! computes the same numbers on it as on the CPU.
//!
//! The reference is always the fp32 CPU interpreter. The candidate is the ANE when its
//! framework loads; elsewhere it is `cpu-f16`, so the fp16 error of every kernel is still
//! measured and the table has the same shape on every machine. The exit status is 1 when any
//! kernel fails or disagrees beyond [`Tolerance::FP16`], so scripts and CI can gate on it.
//!
//! `--probe` measures instead which disputed ANE rules hold on this machine: it runs every
//! kernel of the probe matrix ([`super::probe`]) in a child process of its own and records the
//! outcomes in a capability file.

use super::probe::{matrix, measured_rules, parse_outcome, port, probe_one, ProbeSpec};
use anetrain_device::ane::budget::{CompileBudget, HARD_LIMIT};
use anetrain_device::ane::capabilities::{Capabilities, Probe};
use anetrain_device::ane::self_test::SelfTest;
use anetrain_device::ane::AneInfo;
use anetrain_device::compare::{
    all_pass, compare_on, KernelComparison, Tolerance, Verdict, INPUT_RANGE,
};
use anetrain_device::{AneDevice, CpuDevice, Device, Precision};
use anetrain_mil::check::Applies;
use anetrain_mil::{Bundle, WeightFiles};
use anetrain_model::config::ModelConfig;
use anetrain_model::generate::kernels::round_up_32;
use anetrain_model::generate::DecodeKernels;
use anetrain_model::kernels;
use anetrain_model::source::ModelSource;
use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// How long one probe process may take (compile, load, four runs on each device) before it is
/// killed and its probe recorded as hung; the largest probe compiles a 6 MB weight.
const CHILD_TIMEOUT: Duration = Duration::from_secs(120);

#[derive(Args)]
pub struct DoctorArgs {
    /// The model whose kernels are checked: a preset (stories15M, tiny, ...), a Hugging Face
    /// directory, a run or checkpoint directory, or a llama2.c .bin.
    #[arg(long, default_value = "stories15M")]
    model: String,
    /// Sequence length of the kernels [default: the model's max_seq_len, at most 256].
    #[arg(long)]
    seq: Option<usize>,
    /// Seed of the random kernel inputs.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Print one JSON object (for bug reports) instead of the table.
    #[arg(long)]
    json: bool,
    /// Measure which ops, dtypes and widths this chip and macOS accept and write a capability
    /// file (needs a Mac with an ANE).
    #[arg(long)]
    probe: bool,
    /// Where --probe writes its capability file, merging with earlier results [default:
    /// ~/.anetrain/capabilities-<chip>-<macos>.json].
    #[arg(long, value_name = "FILE", requires = "probe")]
    capabilities: Option<PathBuf>,
    /// Runs one probe and prints its result as a JSON line: what --probe runs in each child.
    #[arg(long, value_name = "ID", hide = true, conflicts_with = "probe")]
    probe_one: Option<String>,
    /// The device of --probe-one: ane, or cpu / cpu-f16 to test the probe machinery anywhere.
    #[arg(long, default_value = "ane", hide = true)]
    device: String,
}

/// Runs `anetrain doctor`.
pub fn run(args: DoctorArgs) -> Result<ExitCode> {
    if let Some(id) = &args.probe_one {
        return probe_one(id, &args.device);
    }
    if args.probe {
        return probe_all(args.capabilities.as_deref());
    }
    let config = load_config(&args.model)?;
    let seq = args.seq.unwrap_or(config.max_seq_len.min(256));
    if seq == 0 || seq > config.max_seq_len {
        bail!(
            "--seq {seq} must be between 1 and the model's max_seq_len {}; pass a smaller --seq",
            config.max_seq_len
        );
    }
    let kernels = kernel_list(&config, seq)?;
    // The framework is loaded once: its facts go into the report, the device into the table.
    let ane = AneDevice::new().map_err(|e| e.to_string());
    let system = System {
        os: os_description(),
        ane: ane.as_ref().map(|a| a.info().clone()).map_err(Clone::clone),
    };
    let reference = CpuDevice::new(Precision::F32);
    let tolerance = Tolerance::FP16;
    let (candidate, note) = candidate(ane);

    if !args.json {
        system.print();
        println!("\nmodel: {} (seq {seq})", args.model);
        println!("{note}");
        println!(
            "inputs: uniform in [{}, {}], fp16-exact, seed {}",
            INPUT_RANGE.0, INPUT_RANGE.1, args.seed
        );
        println!("tolerance: {tolerance}\n");
        print_header(&reference.name(), &candidate.name());
    }
    let mut results = Vec::with_capacity(kernels.len());
    for (name, bundle) in &kernels {
        let r = compare_on(
            &reference,
            candidate.as_ref(),
            name,
            bundle,
            args.seed,
            tolerance,
        );
        if !args.json {
            print_row(&r);
        }
        results.push(r);
    }
    let ok = all_pass(&results);
    if args.json {
        let report = json!({
            "system": system.to_json(),
            "model": args.model,
            "seq": seq,
            "seed": args.seed,
            "input_range": [INPUT_RANGE.0, INPUT_RANGE.1],
            "note": note,
            "reference": reference.name(),
            "candidate": candidate.name(),
            "tolerance": tolerance,
            "kernels": results,
            "ok": ok,
        });
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        let bad = results
            .iter()
            .filter(|r| r.verdict != Verdict::Pass)
            .count();
        match bad {
            0 => println!("\nall {} kernels agree within tolerance", results.len()),
            n => println!(
                "\n{n} of {} kernels failed or disagree; rerun with --json and attach the output \
                 to a bug report",
                results.len()
            ),
        }
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// A preset name, or a model on disk in any form `anetrain` reads. A Hugging Face directory is
/// read for its config alone; the other forms load their weights to find it.
fn load_config(model: &str) -> Result<ModelConfig> {
    Ok(match ModelSource::parse(model)? {
        ModelSource::Preset { name, .. } => ModelConfig::preset(&name)?,
        ModelSource::HuggingFace(dir) => ModelConfig::from_hf_dir(&dir)?,
        other => other.load(0)?.config,
    })
}

/// Every kernel the doctor checks, as (name, bundle): the self-test kernel first (exact in
/// fp16, so it isolates layout and port-order faults), then every training kernel, then the
/// generation decode kernels.
fn kernel_list(config: &ModelConfig, seq: usize) -> Result<Vec<(String, Bundle)>> {
    let self_test = Bundle {
        program: SelfTest::new().program,
        weights: WeightFiles::new(),
    };
    let mut list = vec![("self_test".to_string(), self_test)];
    list.extend(
        kernels::all(config, seq)?
            .into_iter()
            .map(|k| (k.name.to_string(), k.bundle)),
    );
    // The decode kernels attend over a cache whose length is a multiple of 32.
    let decode = DecodeKernels::build(config, round_up_32(seq))?;
    list.extend(
        decode
            .named()
            .into_iter()
            .map(|(name, bundle)| (name.to_string(), bundle.clone())),
    );
    Ok(list)
}

/// The device compared with the fp32 CPU, and a sentence saying which and why.
fn candidate(ane: std::result::Result<AneDevice, String>) -> (Box<dyn Device>, String) {
    match ane {
        Ok(ane) => {
            let note = format!("comparing {} with cpu (f32)", ane.name());
            (Box::new(ane), note)
        }
        Err(e) => (
            Box::new(CpuDevice::new(Precision::F16)),
            format!(
                "no Apple Neural Engine here ({e}): running the CPU half only, comparing \
                 cpu (f32) with cpu-f16 so the fp16 error of every kernel is still reported"
            ),
        ),
    }
}

/// What the machine says about itself and its ANE.
struct System {
    os: String,
    /// What the framework reports when it loaded, else why it did not.
    ane: std::result::Result<AneInfo, String>,
}

impl System {
    fn print(&self) {
        println!("os: {}", self.os);
        match &self.ane {
            Ok(info) => println!("{info}"),
            Err(why) => println!("ANE framework: not available: {why}"),
        }
        let budget = CompileBudget::process();
        println!(
            "compile budget: {} of {} used this process (the framework fails past about {HARD_LIMIT})",
            budget.used(),
            budget.limit()
        );
    }

    fn to_json(&self) -> Value {
        let budget = CompileBudget::process();
        let ane = match &self.ane {
            Ok(i) => {
                json!({
                    "available": true,
                    "macos": i.macos,
                    "has_ane": i.has_ane,
                    "sub_type": i.sub_type,
                    "architecture": i.architecture,
                    "cores": i.cores,
                    "product": i.product,
                    "ane_client_class": i.has_client,
                    "performance_stats_class": i.has_performance_stats,
                })
            }
            Err(why) => json!({ "available": false, "reason": why }),
        };
        json!({
            "os": self.os,
            "anetrain": env!("CARGO_PKG_VERSION"),
            "ane": ane,
            "compile_budget": {
                "used": budget.used(),
                "limit": budget.limit(),
                "hard_limit": HARD_LIMIT,
            },
        })
    }
}

/// `linux x86_64 (Ubuntu 24.04 LTS)`: the platform, plus the distribution's name when
/// `/etc/os-release` says it (macOS versions come from the framework instead).
fn os_description() -> String {
    let platform = format!("{} {}", std::env::consts::OS, std::env::consts::ARCH);
    let pretty = std::fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|l| l.strip_prefix("PRETTY_NAME="))
                .map(|v| v.trim_matches('"').to_string())
        });
    match pretty {
        Some(name) => format!("{platform} ({name})"),
        None => platform,
    }
}

fn print_header(reference: &str, candidate: &str) {
    println!("compile and run times in ms: [{reference} / {candidate}]");
    println!(
        "{:<16} {:>19} {:>19} {:>10} {:>10}  verdict",
        "kernel", "compile ms", "run ms", "max abs", "max rel"
    );
}

fn print_row(r: &KernelComparison) {
    let ms = |pair: [Option<f64>; 2]| {
        let one = |t: Option<f64>| t.map_or_else(|| "-".to_string(), |t| format!("{t:.2}"));
        format!("{} / {}", one(pair[0]), one(pair[1]))
    };
    let err = |e: Option<f32>| e.map_or_else(|| "-".to_string(), |e| format!("{e:.2e}"));
    println!(
        "{:<16} {:>19} {:>19} {:>10} {:>10}  {}",
        r.name,
        ms(r.compile_ms),
        ms(r.run_ms),
        err(r.max_abs),
        err(r.max_rel),
        r.verdict.word()
    );
    if let Verdict::Failed(message) = &r.verdict {
        println!("    {message}");
    }
    // Rows appear as kernels finish, which on the ANE can take seconds each.
    let _ = std::io::stdout().flush();
}

/// `anetrain doctor --probe`: runs every probe in its own process on the ANE and writes the
/// results to `capabilities` (default `~/.anetrain/capabilities-<chip>-<macos>.json`), merging
/// with that file's earlier results. The file is rewritten after every probe, so an
/// interrupted run keeps what it measured.
fn probe_all(capabilities: Option<&Path>) -> Result<ExitCode> {
    // The parent only asks what the machine is, releasing the device at once; every compile
    // happens in a child.
    let (chip, macos) = {
        let ane = AneDevice::new().map_err(|e| {
            anyhow!(
                "probing measures what this machine's Neural Engine accepts, so it needs a Mac \
                 with one ({e}); run `anetrain doctor --probe` on the Mac you want to measure"
            )
        })?;
        let info = ane.info();
        (info.chip().to_string(), info.macos.clone())
    };
    let path = match capabilities {
        Some(p) => p.to_path_buf(),
        None => default_path(&chip, &macos)?,
    };
    let mut caps = Capabilities::new(chip.clone(), macos.clone());
    if path.exists() {
        caps.merge(&Capabilities::read(&path)?)?;
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let exe = std::env::current_exe().context("cannot find this executable to run probes")?;
    let specs = matrix();
    println!(
        "probing the Neural Engine of {chip} on {macos}: {} probes, each in its own process; \
         results in {}",
        specs.len(),
        path.display()
    );
    for spec in &specs {
        let Some(probe) = run_child(&exe, spec)? else {
            continue;
        };
        let verdict = match (&probe.error, probe.compiled && probe.ran) {
            (_, true) => "pass".to_string(),
            (Some(e), false) => format!("FAILED: {e}"),
            (None, false) => "FAILED".to_string(),
        };
        let rule = spec.rule.map(|r| format!(" [{r}]")).unwrap_or_default();
        println!("{:<26}{rule} {verdict}", spec.id);
        caps.record(probe);
        caps.write(&path)?;
    }
    let measured = measured_rules(&caps)?;
    println!("\nmeasured on {chip}:");
    for (rule, applies) in measured.iter() {
        let holds = match applies {
            Applies::Yes => "holds",
            _ => "does not hold",
        };
        println!("  {rule}: {holds}");
    }
    println!("capability file: {}", path.display());
    Ok(ExitCode::SUCCESS)
}

/// Runs probe `spec` in a child and returns its record: a failed one when the child crashed
/// or hung (a crashing compile is a result), `None` when the child reported an error of its
/// own (a broken probe, which measures nothing).
fn run_child(exe: &Path, spec: &ProbeSpec) -> Result<Option<Probe>> {
    let bundle = spec.bundle()?;
    let (dtype, width) = port(&bundle)?;
    let mut command = Command::new(exe);
    command.args(["doctor", "--probe-one", spec.id, "--device", "ane"]);
    let ended = run_with_timeout(&mut command, CHILD_TIMEOUT)
        .with_context(|| format!("cannot run the process for probe `{}`", spec.id))?;
    let failed = |why: String| Probe {
        op: spec.id.to_string(),
        dtype: dtype.name().to_string(),
        width,
        compiled: false,
        ran: false,
        error: Some(why),
    };
    let Some((status, stdout, stderr)) = ended else {
        return Ok(Some(failed(format!(
            "the probe process hung and was killed after {} s",
            CHILD_TIMEOUT.as_secs()
        ))));
    };
    let last_err = stderr.lines().last().unwrap_or("").trim().to_string();
    if status.code() == Some(2) {
        println!("{:<26} skipped: {last_err}", spec.id);
        return Ok(None);
    }
    Ok(Some(match stdout.lines().last().map(parse_outcome) {
        Some(Ok(probe)) => probe,
        _ => failed(format!(
            "the probe process ended ({status}) without a result: {last_err}"
        )),
    }))
}

/// Runs `command` to its end and returns its status, stdout and stderr, or `None` when it
/// was still running after `timeout` (it is killed then).
fn run_with_timeout(
    command: &mut Command,
    timeout: Duration,
) -> std::io::Result<Option<(ExitStatus, String, String)>> {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    // Drained on threads so a chatty framework cannot fill a pipe and stall the child.
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break Some(status);
        }
        if started.elapsed() > timeout {
            // Already exited or unkillable: either way there is no result to wait for.
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let stdout = stdout.join().unwrap_or_default();
    let stderr = stderr.join().unwrap_or_default();
    Ok(status.map(|status| (status, stdout, stderr)))
}

/// Reads `pipe` to its end on a thread of its own.
fn drain<R: Read + Send + 'static>(pipe: Option<R>) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut text = String::new();
        if let Some(mut pipe) = pipe {
            // A pipe that breaks mid-read leaves what arrived, which is all there is to report.
            let _ = pipe.read_to_string(&mut text);
        }
        text
    })
}

/// `~/.anetrain/capabilities-<chip>-<macos>.json`, with the names made file-name safe.
fn default_path(chip: &str, macos: &str) -> Result<PathBuf> {
    let home = std::env::var_os("HOME").ok_or_else(|| {
        anyhow!("HOME is not set, so there is no default capability file; pass --capabilities FILE")
    })?;
    Ok(PathBuf::from(home).join(".anetrain").join(format!(
        "capabilities-{}-{}.json",
        slug(chip),
        slug(macos)
    )))
}

/// `Version 15.3 (Build 24D60)` → `Version-15.3-Build-24D60`.
fn slug(text: &str) -> String {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '.'))
        .filter(|part| !part.is_empty())
        .collect::<Vec<_>>()
        .join("-")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    fn shell(script: &str, timeout: Duration) -> Option<(ExitStatus, String, String)> {
        run_with_timeout(Command::new("sh").args(["-c", script]), timeout).unwrap()
    }

    #[cfg(unix)]
    #[test]
    fn a_child_that_finishes_gives_its_status_and_output() {
        let (status, out, err) = shell(
            "echo '{\"id\":1}'; echo oops >&2; exit 3",
            Duration::from_secs(10),
        )
        .unwrap();
        assert_eq!(status.code(), Some(3));
        assert_eq!(out, "{\"id\":1}\n");
        assert_eq!(err, "oops\n");
    }

    #[cfg(unix)]
    #[test]
    fn a_crashed_child_has_no_exit_code() {
        let (status, _, _) = shell("kill -SEGV $$", Duration::from_secs(10)).unwrap();
        assert_eq!(status.code(), None);
    }

    #[cfg(unix)]
    #[test]
    fn a_hung_child_is_killed_at_the_timeout() {
        let started = Instant::now();
        assert!(shell("exec sleep 30", Duration::from_millis(200)).is_none());
        assert!(started.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn file_names_keep_only_safe_characters() {
        assert_eq!(
            slug("Version 15.3 (Build 24D60)"),
            "Version-15.3-Build-24D60"
        );
        assert_eq!(slug("H16G"), "H16G");
        assert_eq!(slug("a/../b"), "a-..-b");
    }
}
