//! `anetrain doctor`: what this machine's Neural Engine is, and whether every kernel of a model
//! computes the same numbers on it as on the CPU.
//!
//! The reference is always the fp32 CPU interpreter. The candidate is the ANE when its
//! framework loads; elsewhere it is `cpu-f16`, so the fp16 error of every kernel is still
//! measured and the table has the same shape on every machine. The exit status is 1 when any
//! kernel fails or disagrees beyond [`Tolerance::FP16`], so scripts and CI can gate on it.

use super::import::load_weights;
use anetrain_device::ane::budget::{CompileBudget, HARD_LIMIT};
use anetrain_device::ane::self_test::SelfTest;
use anetrain_device::ane::AneInfo;
use anetrain_device::compare::{
    all_pass, compare_on, KernelComparison, Tolerance, Verdict, INPUT_RANGE,
};
use anetrain_device::{AneDevice, CpuDevice, Device, Precision};
use anetrain_mil::{Bundle, WeightFiles};
use anetrain_model::config::ModelConfig;
use anetrain_model::generate::kernels::round_up_32;
use anetrain_model::generate::DecodeKernels;
use anetrain_model::kernels;
use anyhow::{bail, Context, Result};
use clap::Args;
use serde_json::{json, Value};
use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

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
}

/// Runs `anetrain doctor`.
pub fn run(args: DoctorArgs) -> Result<ExitCode> {
    if args.probe {
        return probe();
    }
    let config = load_config(&args.model)?;
    let seq = args.seq.unwrap_or(config.max_seq_len.min(256));
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
    let path = Path::new(model);
    if !path.exists() {
        return ModelConfig::preset(model).with_context(|| {
            format!("--model `{model}` is neither a preset nor an existing path")
        });
    }
    if path.join("config.json").is_file() && !path.join("meta.json").is_file() {
        return Ok(ModelConfig::from_hf_dir(path)?);
    }
    Ok(load_weights(path)?.0)
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

/// `--probe`: the probe matrix needs the ANE; say so plainly where there is none.
fn probe() -> Result<ExitCode> {
    if let Some(e) = AneDevice::new().err() {
        bail!(
            "probing measures what this machine's Neural Engine accepts, so it needs a Mac with \
             one ({e}); run `anetrain doctor --probe` on the Mac you want to measure"
        );
    }
    bail!(
        "`anetrain doctor --probe` is not implemented yet: the probe matrix (each probe in its \
         own process) is still to be written; `anetrain doctor` without --probe runs the kernel \
         comparison"
    )
}
