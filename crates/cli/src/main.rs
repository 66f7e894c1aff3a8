//! The `anetrain` command line.

mod commands;
mod npy;

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
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Mil(cmd) => commands::mil::run(cmd),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}
