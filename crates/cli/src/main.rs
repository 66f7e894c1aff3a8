//! The `anetrain` command line.

mod commands;
mod interrupt;
mod npy;
mod plot;
mod sample;

use clap::{Parser, Subcommand};

/// Train, fine-tune and run transformer language models on the Apple Neural Engine,
/// and run the very same MIL kernels on any CPU.
#[derive(Parser)]
#[command(name = "anetrain", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Work with MIL programs: check them against ANE constraints, format, run.
    #[command(subcommand)]
    Mil(commands::mil::MilCommand),
    /// Train a model (from scratch or from weights), with checkpoints and metrics.
    Train(Box<commands::train::TrainArgs>),
    /// Mean loss and perplexity of a model over a dataset.
    Eval(commands::eval::EvalArgs),
    /// Import a Hugging Face directory or a llama2.c .bin into a run directory.
    Import(commands::import::ImportArgs),
    /// Export a run's latest checkpoint as a Hugging Face directory or a llama2.c .bin.
    Export(commands::export::ExportArgs),
    /// Fold a LoRA adapter (PEFT or mlx-lm) into its base model, as a Hugging Face directory.
    Fuse(commands::fuse::FuseArgs),
    /// Generate text from a model with a KV cache, streaming it as it is sampled.
    Generate(commands::generate::GenerateArgs),
    /// Chat with a model through its chat template, one user message per line of stdin.
    Chat(commands::chat::ChatArgs),
    /// Check this machine's Neural Engine and compare every kernel of a model against the CPU.
    Doctor(commands::doctor::DoctorArgs),
    /// Throughput and latency benchmarks (peak conv stack, dispatch, int8) on any device.
    #[command(subcommand)]
    Bench(commands::bench::BenchCommand),
    /// A live terminal view of one or more runs: loss curves, throughput, progress, state.
    Dashboard(commands::dashboard::DashboardArgs),
    /// Draw runs' loss (and other metrics) against step or tokens as a PNG or SVG.
    Plot(commands::plot::PlotArgs),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Mil(cmd) => commands::mil::run(cmd),
        Command::Train(args) => commands::train::run(*args),
        Command::Eval(args) => commands::eval::run(args),
        Command::Import(args) => commands::import::run(args),
        Command::Export(args) => commands::export::run(args),
        Command::Fuse(args) => commands::fuse::run(args),
        Command::Generate(args) => commands::generate::run(args),
        Command::Chat(args) => commands::chat::run(args),
        Command::Doctor(args) => commands::doctor::run(args),
        Command::Bench(cmd) => commands::bench::run(cmd),
        Command::Dashboard(args) => commands::dashboard::run(args),
        Command::Plot(args) => commands::plot::run(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", error_chain(&e));
            std::process::ExitCode::from(2)
        }
    }
}

/// The error and its causes joined by `: `, skipping a cause whose text an outer message
/// already includes (library errors often quote the OS error they wrap), so each is said once.
fn error_chain(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if !out.contains(&text) {
            if !out.is_empty() {
                out.push_str(": ");
            }
            out.push_str(&text);
        }
    }
    out
}
