//! SIGINT (Ctrl-C) and SIGTERM (docker stop, Slurm, `timeout`) for long commands. Before the
//! work loop starts there is nothing to save, so a signal exits at once (even in the middle of
//! tokenizing a large file). Once the loop runs, the first signal asks it to save and stop
//! after the current step; a second one exits at once, leaving the last checkpoint intact
//! (checkpoints are written atomically, so an exit never leaves half of one).

use signal_hook::consts::{SIGINT, SIGTERM};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

/// The signal that asked a command to stop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    /// SIGINT: Ctrl-C.
    Interrupt,
    /// SIGTERM: a polite kill.
    Terminate,
}

impl Stop {
    /// The shell's convention, 128 + the signal number: 130 for SIGINT, 143 for SIGTERM.
    pub fn exit_code(self) -> ExitCode {
        ExitCode::from(128 + self.signal() as u8)
    }

    fn signal(self) -> i32 {
        match self {
            Stop::Interrupt => SIGINT,
            Stop::Terminate => SIGTERM,
        }
    }

    /// What the user did, for messages.
    pub fn describe(self) -> &'static str {
        match self {
            Stop::Interrupt => "interrupted (Ctrl-C)",
            Stop::Terminate => "terminated (SIGTERM)",
        }
    }
}

/// Installed signal handlers; see the module documentation for what they do when.
pub struct Signals {
    /// The signal number received first, 0 for none.
    received: Arc<AtomicUsize>,
    /// True until the loop starts: a signal then exits at once.
    exit_at_once: Arc<AtomicBool>,
}

impl Signals {
    /// Installs the handlers; from now until [`Signals::arm`] a signal exits at once.
    pub fn install() -> std::io::Result<Self> {
        let received = Arc::new(AtomicUsize::new(0));
        let exit_at_once = Arc::new(AtomicBool::new(true));
        let seen = Arc::new(AtomicBool::new(false));
        for stop in [Stop::Interrupt, Stop::Terminate] {
            let sig = stop.signal();
            let code = 128 + sig;
            // Handlers run in registration order: the exits look at the state before this
            // signal is recorded, so a first signal in the loop only sets the flags.
            signal_hook::flag::register_conditional_shutdown(sig, code, exit_at_once.clone())?;
            signal_hook::flag::register_conditional_shutdown(sig, code, seen.clone())?;
            signal_hook::flag::register(sig, seen.clone())?;
            signal_hook::flag::register_usize(sig, received.clone(), sig as usize)?;
        }
        Ok(Signals {
            received,
            exit_at_once,
        })
    }

    /// The loop has started: from now on the first signal is a request, see [`Signals::stop`].
    pub fn arm(&self) {
        self.exit_at_once.store(false, Ordering::SeqCst);
    }

    /// The signal that asked to stop, if any has arrived.
    pub fn stop(&self) -> Option<Stop> {
        match self.received.load(Ordering::SeqCst) {
            0 => None,
            s if s == SIGTERM as usize => Some(Stop::Terminate),
            _ => Some(Stop::Interrupt),
        }
    }
}
