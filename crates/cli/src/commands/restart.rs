//! Restarting the process when the ANE compile budget runs out (ane-reference §1.10): the
//! command line of the new process and the `exec` that replaces this one (same PID, about
//! 50 ms). The device only counts compiles; what a restart runs is the CLI's business.

use anyhow::anyhow;

/// The flag the restarted process is given so it resumes from the checkpoint.
pub const RESUME_FLAG: &str = "--resume";

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
/// Returns only the error of a failed restart.
#[cfg(unix)]
pub fn exec_restart(argv: &[String]) -> anyhow::Error {
    use std::os::unix::process::CommandExt;
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => {
            return anyhow!(
                "cannot find this executable to restart it: {e}; rerun it by hand with \
                 {RESUME_FLAG}"
            )
        }
    };
    let mut command = std::process::Command::new(&exe);
    if let Some((arg0, rest)) = argv.split_first() {
        command.arg0(arg0).args(rest);
    }
    let e = command.exec();
    anyhow!(
        "cannot restart `{}`: {e}; rerun it by hand with {RESUME_FLAG}",
        exe.display()
    )
}

/// Elsewhere a process cannot be replaced in place.
#[cfg(not(unix))]
pub fn exec_restart(_argv: &[String]) -> anyhow::Error {
    anyhow!(
        "this platform cannot replace a running process; rerun the same command with {RESUME_FLAG}"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restart_command_adds_resume_exactly_once() {
        let args = |s: &[&str]| s.iter().map(|a| a.to_string()).collect::<Vec<_>>();
        assert_eq!(
            restart_command(&args(&["anetrain", "train", "--steps", "10"])),
            args(&["anetrain", "train", "--steps", "10", "--resume"])
        );
        let already = args(&["anetrain", "train", "--resume", "--steps", "10"]);
        assert_eq!(restart_command(&already), already);
        let valued = args(&["anetrain", "train", "--resume=ckpt"]);
        assert_eq!(restart_command(&valued), valued);
        assert_eq!(
            restart_command(&args(&["anetrain", "run", "--", "--resume"])),
            args(&["anetrain", "run", "--resume", "--", "--resume"]),
            "a positional `--resume` after `--` is not the flag"
        );
        assert_eq!(
            restart_command(&restart_command(&args(&["a"]))),
            args(&["a", "--resume"])
        );
    }
}
