//! `anetrain mil`: check, format and run MIL programs.

use super::device::DeviceArgs;
use super::probe::measured_rules;
use crate::npy;
use anetrain_device::ane::capabilities::Capabilities;
use anetrain_device::ane::weights_dict::model_dir_files;
use anetrain_device::compare::random_inputs;
use anetrain_device::Kernel;
use anetrain_mil::check::{check, check_with, Chip};
use anetrain_mil::{parse_program, print_program, Bundle, Program, WeightFiles};
use anetrain_model::generate::{plan_kernels, DecodePlan};
use anetrain_model::kernels::{self, KernelForms};
use anetrain_model::source::ModelSource;
use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, Subcommand};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Subcommand)]
pub enum MilCommand {
    /// Check a program against the ANE constraint catalog; exit 1 on any violation.
    Check {
        /// The .mil file.
        file: PathBuf,
        /// Chip generation to check for: m1, m2, m3, m4, m5 (or h13..h16).
        #[arg(long, default_value = "m4")]
        chip: String,
        /// A capability file from `anetrain doctor --probe`: rules measured on this chip
        /// replace the catalog's guesses.
        #[arg(long, value_name = "FILE")]
        capabilities: Option<PathBuf>,
    },
    /// Parse a program and print it in canonical form.
    Fmt {
        /// The .mil file.
        file: PathBuf,
    },
    /// Run a program and print its outputs' shapes and statistics.
    Run(RunArgs),
    /// Write every training and decode kernel of a model as DIR/<kernel>/model.mil plus its
    /// weight files, exactly what goes to Apple's compiler, to read, check or diff.
    Dump(DumpArgs),
}

#[derive(Args)]
pub struct DumpArgs {
    /// The model: a preset (stories15M, qwen3-0.6b, ...), a Hugging Face directory, a run or
    /// checkpoint directory, or a llama2.c .bin.
    #[arg(long)]
    model: String,
    /// Sequence length of the training kernels and the decode cache (the ANE's cache is this
    /// rounded up to 32) [default: the model's max_seq_len, at most 256].
    #[arg(long)]
    seq: Option<usize>,
    /// The directory to write; it must not exist yet or be empty.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// A capability file from `anetrain doctor --probe`: dump the kernel forms it shows
    /// working on that machine, as train and generate on its ANE compile them [default: the
    /// proven forms].
    #[arg(long, value_name = "FILE")]
    capabilities: Option<PathBuf>,
    /// Whose decode kernels to write: the ANE's (32 wide, one cache length) or the fp32 CPU
    /// device's (width-1 decode steps over each cache bucket, and the widest prefill chunk).
    #[arg(long, value_enum, default_value_t = DecodeTarget::Ane)]
    decode_plan: DecodeTarget,
}

/// The device whose decode plan `mil dump` writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum DecodeTarget {
    /// The ANE's plan; also what `--device cpu-f16` runs.
    Ane,
    /// The fp32 CPU device's plan.
    Cpu,
}

#[derive(Args)]
pub struct RunArgs {
    /// The .mil file.
    file: PathBuf,
    #[command(flatten)]
    device: DeviceArgs,
    /// Directory that BLOBFILE paths are relative to (`@model_path/` = this directory);
    /// defaults to the directory of FILE.
    #[arg(long)]
    weights: Option<PathBuf>,
    /// An input as NAME=FILE.npy (fp16 or fp32, of the declared shape); repeatable.
    #[arg(long = "input", value_name = "NAME=FILE")]
    inputs: Vec<String>,
    /// Fill every input not given with --input with uniform random values in [-1, 1).
    #[arg(long)]
    random_inputs: bool,
    /// Seed for --random-inputs.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Write each output to DIR/<output name>.npy.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
}

/// Runs one `anetrain mil` subcommand.
pub fn run(cmd: MilCommand) -> Result<ExitCode> {
    match cmd {
        MilCommand::Check {
            file,
            chip,
            capabilities,
        } => check_file(&file, &chip, capabilities.as_deref()),
        MilCommand::Fmt { file } => {
            print!("{}", print_program(&load(&file)?));
            Ok(ExitCode::SUCCESS)
        }
        MilCommand::Run(args) => run_file(&args),
        MilCommand::Dump(args) => dump(&args),
    }
}

fn load(file: &Path) -> Result<Program> {
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("cannot read MIL file {}", file.display()))?;
    parse_program(&text).map_err(|e| anyhow!("{}: {e}", file.display()))
}

fn check_file(file: &Path, chip: &str, capabilities: Option<&Path>) -> Result<ExitCode> {
    let chip = Chip::from_name(chip).map_err(|e| anyhow!("{e}"))?;
    let program = load(file)?;
    let report = match capabilities {
        None => check(&program, chip),
        Some(path) => {
            let caps = Capabilities::read(path)?;
            let measured = measured_rules(&caps)?;
            if measured.chip() != chip {
                bail!(
                    "{} was measured on {:?}, not {chip:?}; pass --chip to match it",
                    path.display(),
                    measured.chip()
                );
            }
            check_with(&program, chip, &measured)
        }
    };
    print!("{report}");
    if report.is_clean() {
        println!("{}: no violations for {chip:?}", file.display());
        Ok(ExitCode::SUCCESS)
    } else {
        println!(
            "{}: {} violation(s) for {chip:?}",
            file.display(),
            report.violations.len()
        );
        Ok(ExitCode::from(1))
    }
}

fn run_file(args: &RunArgs) -> Result<ExitCode> {
    let program = load(&args.file)?;
    let dir = match &args.weights {
        Some(d) => d.clone(),
        None => args
            .file
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default(),
    };
    let weights = WeightFiles::load_dir(&program, &dir)
        .context("loading weights (pass --weights DIR to say where @model_path/ is)")?;
    let (device, _) = args.device.device.device()?;
    let mut kernel = device.compile(&program, &weights)?;
    let mut given = vec![false; kernel.inputs().len()];
    for spec in &args.inputs {
        let (name, file) = spec
            .split_once('=')
            .ok_or_else(|| anyhow!("--input `{spec}` must look like NAME=FILE.npy"))?;
        let index = kernel.input_index(name).map_err(|_| {
            anyhow!(
                "the program has no input `{name}`; its inputs are: {}",
                port_list(kernel.as_ref())
            )
        })?;
        let tensor = npy::read(Path::new(file))?;
        let expected = &kernel.inputs()[index].ty;
        if tensor.shape != expected.shape {
            bail!(
                "input `{name}` from {file} has shape {:?}, but the program declares {expected}",
                tensor.shape
            );
        }
        kernel.write_input(index, &tensor.data)?;
        given[index] = true;
    }
    let random = random_inputs(kernel.as_ref(), args.seed);
    for (index, done) in given.iter().enumerate() {
        if *done {
            continue;
        }
        let spec = kernel.inputs()[index].clone();
        if !args.random_inputs {
            bail!(
                "input `{}` ({}) was not given: pass --input {}=FILE.npy or --random-inputs",
                spec.name,
                spec.ty,
                spec.name
            );
        }
        kernel.write_input(index, &random[index])?;
    }
    let start = std::time::Instant::now();
    kernel.run()?;
    let elapsed = start.elapsed();
    if let Some(out) = &args.out {
        std::fs::create_dir_all(out)
            .with_context(|| format!("cannot create output directory {}", out.display()))?;
    }
    println!(
        "ran on {} in {:.3} ms",
        device.name(),
        elapsed.as_secs_f64() * 1e3
    );
    for (index, spec) in kernel.outputs().iter().enumerate() {
        let mut data = vec![0f32; spec.numel()];
        kernel.read_output(index, &mut data)?;
        println!("{}: {} {}", spec.name, spec.ty, Stats::of(&data));
        if let Some(out) = &args.out {
            let path = out.join(format!("{}.npy", spec.name));
            npy::write(&path, &spec.ty.shape, &data)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `anetrain mil dump`: every kernel of the model laid out as the compiler's model directory
/// (`model.mil`, `weights/*.bin`), so `anetrain mil check` and `anetrain mil run` read it as is.
fn dump(args: &DumpArgs) -> Result<ExitCode> {
    let config = ModelSource::parse(&args.model)?.config()?;
    let seq = config.kernel_seq(args.seq)?;
    // Built before anything is written, so a bad model or seq leaves no directory behind.
    let forms = match &args.capabilities {
        Some(path) => KernelForms::from_capabilities(&Capabilities::read(path)?)?,
        None => KernelForms::default(),
    };
    let kernels: Vec<(String, Bundle)> = match args.decode_plan {
        DecodeTarget::Ane => kernels::training_and_decode(&config, seq, forms)?
            .into_iter()
            .map(|k| (k.name.to_string(), k.bundle))
            .collect(),
        DecodeTarget::Cpu => {
            let plan = DecodePlan::new(&config, seq, None)?;
            let mut list: Vec<(String, Bundle)> = kernels::all(&config, seq, forms)?
                .into_iter()
                .map(|k| (k.name.to_string(), k.bundle))
                .collect();
            list.extend(plan_kernels(&config, &plan, forms)?);
            list
        }
    };
    let occupied = std::fs::read_dir(&args.out).is_ok_and(|mut entries| entries.next().is_some());
    if occupied || args.out.is_file() {
        bail!(
            "--out {} already exists and is not an empty directory; choose a new directory \
             (dump never overwrites files)",
            args.out.display()
        );
    }
    for (name, bundle) in &kernels {
        let dir = args.out.join(name);
        let text = print_program(&bundle.program);
        for (relative, bytes) in model_dir_files(&text, &bundle.weights)? {
            let path = dir.join(relative);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)
                    .with_context(|| format!("cannot create {}", parent.display()))?;
            }
            std::fs::write(&path, bytes)
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
        let input = bundle
            .program
            .main()
            .and_then(|f| f.inputs.first())
            .map(|(_, ty)| ty.to_string())
            .unwrap_or_default();
        println!(
            "{:<26} input {input}, {} weight file(s) -> {}",
            name,
            bundle.weights.iter().count(),
            dir.join("model.mil").display()
        );
    }
    for line in forms.describe() {
        println!("kernel form: {line}");
    }
    println!(
        "wrote {} kernels of {} (seq {seq}, the {} decode plan) to {}",
        kernels.len(),
        args.model,
        match args.decode_plan {
            DecodeTarget::Ane => "ANE's",
            DecodeTarget::Cpu => "CPU's",
        },
        args.out.display()
    );
    Ok(ExitCode::SUCCESS)
}

fn port_list(kernel: &dyn Kernel) -> String {
    kernel
        .inputs()
        .iter()
        .map(|s| format!("{} {}", s.name, s.ty))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Summary statistics of an output.
struct Stats {
    min: f32,
    max: f32,
    mean: f64,
    std: f64,
    non_finite: usize,
}

impl Stats {
    fn of(data: &[f32]) -> Stats {
        let finite: Vec<f32> = data.iter().copied().filter(|x| x.is_finite()).collect();
        let n = finite.len().max(1) as f64;
        let mean = finite.iter().map(|&x| x as f64).sum::<f64>() / n;
        let var = finite
            .iter()
            .map(|&x| (x as f64 - mean).powi(2))
            .sum::<f64>()
            / n;
        Stats {
            min: finite.iter().copied().fold(f32::INFINITY, f32::min),
            max: finite.iter().copied().fold(f32::NEG_INFINITY, f32::max),
            mean,
            std: var.sqrt(),
            non_finite: data.len() - finite.len(),
        }
    }
}

impl std::fmt::Display for Stats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "min {:.6} max {:.6} mean {:.6} std {:.6}",
            self.min, self.max, self.mean, self.std
        )?;
        if self.non_finite > 0 {
            write!(f, " non-finite {}", self.non_finite)?;
        }
        Ok(())
    }
}
