//! Running a piece of `anetrain` in a child process: a failed `ANECCompile` cannot be
//! recovered in-process (ane-reference §1.7), so the doctor compiles each probe and each kernel
//! in a process of its own, and a crash or hang costs one row instead of every later one.

use std::io::Read;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Runs `command` to its end and returns its status, stdout and stderr, or `None` when it
/// was still running after `timeout` (it is killed then).
pub fn run_with_timeout(
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

/// Why a child gave no result, for the row it leaves: how it ended and its last stderr line.
pub fn ended_without_result(status: ExitStatus, stderr: &str) -> String {
    let last = stderr.lines().last().unwrap_or("").trim();
    let how = match status.code() {
        Some(code) => format!("exited with status {code}"),
        None => format!("crashed ({status})"),
    };
    if last.is_empty() {
        format!("its process {how} without a result")
    } else {
        format!("its process {how} without a result: {last}")
    }
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
}
