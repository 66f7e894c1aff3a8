//! `anetrain doctor`: what this machine's Neural Engine is, and whether every kernel of a model
//! computes the same numbers on it as on the CPU.
//!
//! The reference is always the fp32 CPU interpreter. The candidate is the ANE when its
//! framework loads; off Apple silicon it is `cpu-f16`, so the fp16 error of every kernel is
//! still measured and the table has the same shape on every machine. On Apple silicon a
//! framework that does not load is itself the finding: exit 1 with the reason. The exit status
//! is 1 when any kernel fails or disagrees beyond [`Tolerance::FP16`], so scripts and CI can
//! gate on it.
//!
//! Every kernel compiles and runs in a child process (`--kernel-one`, like the probes'
//! `--probe-one`): a failed `ANECCompile` cannot be recovered in-process (ane-reference §1.7),
//! so a crash, hang or rejected compile costs its own row and no other.
//!
//! `--probe` measures instead which disputed ANE rules hold on this machine: it runs every
//! kernel of the probe matrix ([`super::probe`]) in a child process of its own and records the
//! outcomes in a capability file.

use super::child::{ended_without_result, run_with_timeout};
use super::probe::{matrix, measured_rules, parse_outcome, port, probe_one, ProbeSpec};
use anetrain_device::ane::budget::{CompileBudget, HARD_LIMIT};
use anetrain_device::ane::capabilities::{Capabilities, Probe};
use anetrain_device::ane::self_test::SelfTest;
use anetrain_device::ane::{AneInfo, ConstraintCheck};
use anetrain_device::compare::{
    all_pass, compare_on, KernelComparison, Tolerance, Verdict, INPUT_RANGE,
};
use anetrain_device::{AneDevice, CpuDevice, Device, Precision};
use anetrain_mil::check::Applies;
use anetrain_mil::Bundle;
use anetrain_model::config::ModelConfig;
use anetrain_model::kernels::{self, KernelForms};
use anetrain_model::source::ModelSource;
use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use serde_json::{json, Value};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Duration;

/// How long one probe process may take (compile, load, four runs on each device) before it is
/// killed and its probe recorded as hung; the largest probe compiles a 6 MB weight.
const CHILD_TIMEOUT: Duration = Duration::from_secs(120);

/// How long one kernel's process may take by default: the largest presets' kernels take
/// seconds to compile and run on each device.
const KERNEL_TIMEOUT_SECS: u64 = 600;

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
    /// The device of --probe-one and --kernel-one: ane, or cpu / cpu-f16 to test the
    /// machinery anywhere.
    #[arg(long, default_value = "ane", hide = true)]
    device: String,
    /// Compares one kernel and prints its row as a JSON line: what the doctor runs in each
    /// child.
    #[arg(long, value_name = "NAME", hide = true, conflicts_with = "probe")]
    kernel_one: Option<String>,
    /// Test hook: make the child of kernel NAME `crash`, `hang` or `garble` its output, to
    /// check that the other rows survive it.
    #[arg(long, value_name = "NAME:HOW", hide = true)]
    inject_failure: Option<String>,
    /// Seconds a kernel's child may run before it is killed and its row marked hung.
    #[arg(long, value_name = "SECS", default_value_t = KERNEL_TIMEOUT_SECS, hide = true)]
    child_timeout: u64,
}

/// Runs `anetrain doctor`.
pub fn run(args: DoctorArgs) -> Result<ExitCode> {
    if let Some(id) = &args.probe_one {
        return probe_one(id, &args.device);
    }
    if args.probe {
        return probe_all(args.capabilities.as_deref());
    }
    let config = ModelSource::parse(&args.model)?.config()?;
    let seq = config.kernel_seq(args.seq)?;
    let kernels = kernel_list(&config, seq)?;
    if let Some(name) = &args.kernel_one {
        return kernel_one(&args, &kernels, name);
    }
    // The parent only loads the framework for its facts; every compile happens in a child.
    let ane = AneDevice::new().map_err(|e| e.to_string());
    if let (true, Err(why)) = (ON_APPLE_SILICON, &ane) {
        eprintln!(
            "error: this is a Mac with Apple silicon, but the Neural Engine framework cannot be \
             used: {why}\nanetrain cannot run on the ANE here; please report this with the \
             macOS version, and use --device cpu meanwhile"
        );
        return Ok(ExitCode::from(1));
    }
    let system = System {
        os: os_description(),
        ane: ane.as_ref().map(|a| a.info().clone()).map_err(Clone::clone),
    };
    let reference = CpuDevice::new(Precision::F32);
    let tolerance = Tolerance::FP16;
    let (candidate, child_device, note) = candidate(ane);
    let exe = std::env::current_exe().context("cannot find this executable to run kernels")?;
    let child = KernelChild {
        exe: &exe,
        args: &args,
        device: child_device,
        devices: [reference.name(), candidate.name()],
    };

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
    for (name, _) in &kernels {
        let r = child.compare(name)?;
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

/// Every kernel the doctor checks, as (name, bundle): the self-test kernel first (exact in
/// fp16, so it isolates layout and port-order faults), then every training and decode kernel
/// in the forms training would compile here ([`machine_forms`]).
fn kernel_list(config: &ModelConfig, seq: usize) -> Result<Vec<(String, Bundle)>> {
    let mut list = vec![("self_test".to_string(), SelfTest::new()?.bundle)];
    list.extend(
        kernels::training_and_decode(config, seq, machine_forms())?
            .into_iter()
            .map(|k| (k.name.to_string(), k.bundle)),
    );
    Ok(list)
}

/// Whether this build runs where the ANE exists, so failing to load it is a finding.
const ON_APPLE_SILICON: bool = cfg!(all(target_os = "macos", target_arch = "aarch64"));

/// The device compared with the fp32 CPU, its `--device` name for the children, and a
/// sentence saying which and why.
fn candidate(
    ane: std::result::Result<AneDevice, String>,
) -> (Box<dyn Device>, &'static str, String) {
    match ane {
        Ok(ane) => {
            let note = format!(
                "comparing {} with cpu (f32), each kernel in a process of its own",
                ane.name()
            );
            (Box::new(ane), "ane", note)
        }
        Err(e) => (
            Box::new(CpuDevice::new(Precision::F16)),
            "cpu-f16",
            format!(
                "no Apple Neural Engine here ({e}): running the CPU half only, comparing \
                 cpu (f32) with cpu-f16 so the fp16 error of every kernel is still reported"
            ),
        ),
    }
}

/// How the doctor runs one kernel's comparison in a child process.
struct KernelChild<'a> {
    exe: &'a Path,
    args: &'a DoctorArgs,
    /// `--device` of the child: `ane` or `cpu-f16`.
    device: &'static str,
    /// Reference and candidate names, for rows of children that gave no result.
    devices: [String; 2],
}

impl KernelChild<'_> {
    /// The row of kernel `name`: the child's own, or a failed one saying how the child ended.
    fn compare(&self, name: &str) -> Result<KernelComparison> {
        let a = self.args;
        let mut command = Command::new(self.exe);
        command.args(["doctor", "--model", &a.model, "--kernel-one", name]);
        command.args(["--device", self.device, "--seed", &a.seed.to_string()]);
        if let Some(seq) = a.seq {
            command.args(["--seq", &seq.to_string()]);
        }
        if let Some(inject) = &a.inject_failure {
            command.args(["--inject-failure", inject]);
        }
        let timeout = Duration::from_secs(a.child_timeout);
        let ended = run_with_timeout(&mut command, timeout)
            .with_context(|| format!("cannot run the process for kernel `{name}`"))?;
        let failed = |why: String| KernelComparison {
            name: name.to_string(),
            devices: self.devices.clone(),
            compile_ms: [None, None],
            run_ms: [None, None],
            max_abs: None,
            max_rel: None,
            worst_output: None,
            verdict: Verdict::Failed(why),
        };
        let Some((status, stdout, stderr)) = ended else {
            return Ok(failed(format!(
                "its process hung and was killed after {} s",
                a.child_timeout
            )));
        };
        let row = stdout
            .lines()
            .last()
            .and_then(|line| serde_json::from_str::<KernelComparison>(line).ok())
            .filter(|r| r.name == name);
        Ok(match row {
            Some(row) if status.success() => row,
            _ => failed(ended_without_result(status, &stderr)),
        })
    }
}

/// `anetrain doctor --kernel-one NAME`: compares kernel `name` on `--device` with the fp32
/// CPU and prints the row as one JSON line. A failure on either device is the row's verdict.
fn kernel_one(args: &DoctorArgs, kernels: &[(String, Bundle)], name: &str) -> Result<ExitCode> {
    let (_, bundle) = kernels
        .iter()
        .find(|(n, _)| n == name)
        .ok_or_else(|| anyhow!("the model has no kernel `{name}`"))?;
    if let Some(how) = injected(args.inject_failure.as_deref(), name)? {
        match how {
            "crash" => std::process::abort(),
            "hang" => loop {
                std::thread::sleep(Duration::from_secs(60));
            },
            _ => {
                println!("not a result");
                return Ok(ExitCode::SUCCESS);
            }
        }
    }
    let candidate: Box<dyn Device> = match args.device.as_str() {
        "ane" => ane_device()?,
        "cpu" => Box::new(CpuDevice::new(Precision::F32)),
        "cpu-f16" => Box::new(CpuDevice::new(Precision::F16)),
        other => bail!("unknown doctor device `{other}`; choose ane, cpu or cpu-f16"),
    };
    let reference = CpuDevice::new(Precision::F32);
    let row = compare_on(
        &reference,
        candidate.as_ref(),
        name,
        bundle,
        args.seed,
        Tolerance::FP16,
    );
    println!("{}", serde_json::to_string(&row)?);
    Ok(ExitCode::SUCCESS)
}

/// The kernel forms of this machine's capability file when `anetrain doctor --probe` wrote
/// one and it leaves every kernel a form, else the proven defaults (off Apple silicon too).
// Off Apple silicon `AneDevice` is uninhabited, so everything after `new()` is statically dead.
#[cfg_attr(
    not(all(target_os = "macos", target_arch = "aarch64")),
    allow(unreachable_code)
)]
fn machine_forms() -> KernelForms {
    let Ok(ane) = AneDevice::new() else {
        return KernelForms::default();
    };
    let info = ane.info();
    Capabilities::default_path(info.chip(), &info.macos)
        .ok()
        .filter(|path| path.is_file())
        .and_then(|path| Capabilities::read(&path).ok())
        .and_then(|caps| KernelForms::from_capabilities(&caps).ok())
        .unwrap_or_default()
}

/// The ANE for a kernel child, holding programs to the rules this machine's capability file
/// measured when `anetrain doctor --probe` wrote one, else to the catalog's.
// Off Apple silicon `AneDevice` is uninhabited, so everything after `new()` is statically dead.
#[cfg_attr(
    not(all(target_os = "macos", target_arch = "aarch64")),
    allow(unreachable_code)
)]
fn ane_device() -> Result<Box<dyn Device>> {
    let ane = AneDevice::new()?;
    let info = ane.info().clone();
    let measured = Capabilities::default_path(info.chip(), &info.macos)
        .ok()
        .filter(|path| path.is_file())
        .map(|path| -> Result<_> { Ok(measured_rules(&Capabilities::read(&path)?)?) });
    Ok(Box::new(match measured {
        Some(Ok(rules)) => ane.with_constraint_check(ConstraintCheck::Measured(rules)),
        Some(Err(e)) => {
            eprintln!("warning: the capability file is not used ({e}); checking the catalog");
            ane
        }
        None => ane,
    }))
}

/// The failure `--inject-failure NAME:HOW` asks of kernel `name`, if any.
fn injected<'a>(spec: Option<&'a str>, name: &str) -> Result<Option<&'a str>> {
    let Some(spec) = spec else {
        return Ok(None);
    };
    let (target, how) = spec
        .split_once(':')
        .filter(|(_, how)| ["crash", "hang", "garble"].contains(how))
        .ok_or_else(|| {
            anyhow!("--inject-failure `{spec}` must be NAME:crash, NAME:hang or NAME:garble")
        })?;
    Ok((target == name).then_some(how))
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
        None => Capabilities::default_path(&chip, &macos)?,
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
