//! The per-process compile budget (ane-reference §1.10).
//!
//! After about 119 `compileWithQoS` calls a process's ANE compiler fails or becomes unstable, and
//! nothing short of a new process recovers it. The device counts compiles here and refuses to go
//! past [`HARD_LIMIT`]. Callers reach it through [`Device::compile_budget`](crate::Device) and
//! ask [`CompileBudget::needs_restart`] before work that would compile; restarting the process
//! (checkpoint, then `exec`) is the front end's business, since only it knows its command line.

use crate::{DeviceError, Result};
use std::sync::atomic::{AtomicUsize, Ordering};

/// The budget MX and Orion use, leaving a margin below the observed ~119.
pub const DEFAULT_LIMIT: usize = 100;

/// Compiles past this count are refused outright: the observed failure point.
pub const HARD_LIMIT: usize = 119;

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
                     survives; save your work and start a new process to compile more"
                ))
            })
    }
}
