//! The per-process compile budget (ane-reference §1.10).
//!
//! After about 119 `compileWithQoS` calls a process's ANE compiler fails or becomes unstable, and
//! nothing short of a new process recovers it. The device counts compiles here and refuses to go
//! past [`HARD_LIMIT`]; the trainer asks [`CompileBudget::needs_restart`] before a step that would
//! compile, and when it says yes it checkpoints and replaces the process with
//! [`restart_command`] (`exec`, which keeps the PID and costs about 50 ms).

use crate::{DeviceError, Result};
use std::sync::atomic::{AtomicUsize, Ordering};

/// The budget MX and Orion use, leaving a margin below the observed ~119.
pub const DEFAULT_LIMIT: usize = 100;

/// Compiles past this count are refused outright: the observed failure point.
pub const HARD_LIMIT: usize = 119;

/// The flag the restarted process is given so it resumes from the checkpoint.
pub const RESUME_FLAG: &str = "--resume";

/// A compile counter with a soft limit for planned restarts.
#[derive(Debug)]
pub struct CompileBudget {
    used: AtomicUsize,
    limit: AtomicUsize,
}

static PROCESS: CompileBudget = CompileBudget::new(DEFAULT_LIMIT);

impl CompileBudget {
    /// A fresh counter with soft limit `limit` (tests and tools; devices use [`Self::process`]).
    pub const fn new(limit: usize) -> CompileBudget {
        CompileBudget {
            used: AtomicUsize::new(0),
            limit: AtomicUsize::new(limit),
        }
    }

    /// The counter of this process, which every ANE compile is charged to.
    pub fn process() -> &'static CompileBudget {
        &PROCESS
    }

    /// Compiles so far.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::SeqCst)
    }

    /// The soft limit.
    pub fn limit(&self) -> usize {
        self.limit.load(Ordering::SeqCst)
    }

    /// Changes the soft limit (it cannot exceed [`HARD_LIMIT`]).
    pub fn set_limit(&self, limit: usize) {
        self.limit.store(limit.min(HARD_LIMIT), Ordering::SeqCst);
    }

    /// Compiles left before the soft limit.
    pub fn remaining(&self) -> usize {
        self.limit().saturating_sub(self.used())
    }

    /// True when compiling `upcoming` more programs would pass the soft limit, so the caller
    /// should checkpoint and restart first.
    pub fn needs_restart(&self, upcoming: usize) -> bool {
        self.used().saturating_add(upcoming) > self.limit()
    }

    /// Charges one compile, refusing once [`HARD_LIMIT`] compiles have been made. Returns the
    /// new count.
    pub fn charge(&self) -> Result<usize> {
        self.used
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < HARD_LIMIT).then_some(n + 1)
            })
            .map(|previous| previous + 1)
            .map_err(|n| {
                DeviceError::Runtime(format!(
                    "this process has already compiled {n} ANE programs, the most the framework \
                     survives; checkpoint and restart the process with {RESUME_FLAG}"
                ))
            })
    }
}

/// The argv to `exec` for a restart: `current_args` (argv[0] first) with [`RESUME_FLAG`] added
/// once. An existing `--resume` or `--resume=<value>` is kept as it is; the flag goes before a
/// `--` separator so it is not taken as a positional argument.
pub fn restart_command(current_args: &[String]) -> Vec<String> {
    let end = current_args
        .iter()
        .position(|a| a == "--")
        .unwrap_or(current_args.len());
    let options = &current_args[..end];
    let present = options
        .iter()
        .any(|a| a == RESUME_FLAG || a.starts_with("--resume="));
    let mut argv = current_args.to_vec();
    if !present {
        argv.insert(end, RESUME_FLAG.to_string());
    }
    argv
}

/// Replaces this process with `argv` (from [`restart_command`]), running the same executable.
/// Returns only on failure.
#[cfg(unix)]
pub fn exec_restart(argv: &[String]) -> DeviceError {
    use std::os::unix::process::CommandExt;
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => {
            return DeviceError::Runtime(format!(
            "cannot find this executable to restart it: {e}; rerun it by hand with {RESUME_FLAG}"
        ))
        }
    };
    let mut command = std::process::Command::new(&exe);
    if let Some((arg0, rest)) = argv.split_first() {
        command.arg0(arg0).args(rest);
    }
    let e = command.exec();
    DeviceError::Runtime(format!(
        "cannot restart `{}`: {e}; rerun it by hand with {RESUME_FLAG}",
        exe.display()
    ))
}
