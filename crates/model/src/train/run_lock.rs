//! An advisory lock on a run directory, so two trainings never write one `--out`: the file
//! `RUN_DIR/.lock` holds the pid of the process writing the run. It is created exclusively, so
//! of two processes starting together exactly one wins; a lock whose process is gone (a
//! `kill -9`, a power cut) is stale and is taken over.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anetrain_device::host::process_alive;

use crate::error::{ModelError, Result};

/// Name of the lock file inside a run directory.
pub const LOCK_FILE: &str = ".lock";

/// The run directories this process holds locks on (absolute): the lock file cannot tell two
/// trainers of one process apart, since it holds the pid an exec restart keeps.
static HELD: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// The lock of one run directory, released (its file deleted) when dropped.
#[derive(Debug)]
pub struct RunLock {
    held: PathBuf,
    path: PathBuf,
    stale_holder: Option<u32>,
    /// The run directory, if taking the lock created it: removed again on release if the run
    /// left nothing in it (it was refused before writing anything).
    created: Option<PathBuf>,
}

impl RunLock {
    /// Takes the lock of `run_dir` (creating the directory), or fails at once naming the live
    /// process that holds it. A lock left by a dead process is taken over; see
    /// [`RunLock::took_over_from`].
    pub fn acquire(run_dir: &Path) -> Result<Self> {
        let held = std::path::absolute(run_dir).map_err(|e| ModelError::io(run_dir, e))?;
        let mut all = HELD.lock().unwrap_or_else(|e| e.into_inner());
        if all.contains(&held) {
            return Err(ModelError::Options(format!(
                "{} is in use by another trainer of this process; free that one first, or choose another directory",
                run_dir.display()
            )));
        }
        let lock = RunLock::acquire_file(run_dir, held.clone())?;
        all.push(held);
        Ok(lock)
    }

    fn acquire_file(run_dir: &Path, held: PathBuf) -> Result<Self> {
        let created = (!run_dir.exists()).then(|| run_dir.to_path_buf());
        std::fs::create_dir_all(run_dir).map_err(|e| ModelError::io(run_dir, e))?;
        let path = run_dir.join(LOCK_FILE);
        let mut stale_holder = None;
        // Two rounds: the second follows the removal of a stale lock.
        for _ in 0..2 {
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
            {
                Ok(mut file) => {
                    writeln!(file, "{}", std::process::id())
                        .and_then(|()| file.sync_all())
                        .map_err(|e| ModelError::io(&path, e))?;
                    return Ok(RunLock {
                        held,
                        path,
                        stale_holder,
                        created,
                    });
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let holder = read_holder(&path)?;
                    match holder {
                        // This very process, restarted by exec (same pid) to renew its budget.
                        Some(pid) if pid == std::process::id() => {
                            return Ok(RunLock {
                                held,
                                path,
                                stale_holder,
                                created,
                            })
                        }
                        Some(pid) if process_alive(pid) => {
                            return Err(ModelError::RunLocked {
                                dir: run_dir.to_path_buf(),
                                pid,
                            })
                        }
                        _ => {
                            stale_holder = Some(holder.unwrap_or(0));
                            match std::fs::remove_file(&path) {
                                Ok(()) => {}
                                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                                Err(e) => return Err(ModelError::io(&path, e)),
                            }
                        }
                    }
                }
                Err(e) => return Err(ModelError::io(&path, e)),
            }
        }
        // Another process took the stale lock between our removal and creation.
        match read_holder(&path)? {
            Some(pid) => Err(ModelError::RunLocked {
                dir: run_dir.to_path_buf(),
                pid,
            }),
            None => Err(ModelError::format(
                &path,
                "the lock file keeps changing; another anetrain is starting on this run directory",
            )),
        }
    }

    /// The pid of the dead process whose stale lock was taken over (0 if its file was
    /// unreadable), for the caller to tell the user.
    pub fn took_over_from(&self) -> Option<u32> {
        self.stale_holder
    }
}

impl Drop for RunLock {
    fn drop(&mut self) {
        HELD.lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|d| *d != self.held);
        // Only our own lock is removed: never one another process took over meanwhile.
        if read_holder(&self.path).ok().flatten() == Some(std::process::id()) {
            let _ = std::fs::remove_file(&self.path);
            if let Some(dir) = &self.created {
                // Fails, as it should, unless the directory is empty.
                let _ = std::fs::remove_dir(dir);
            }
        }
    }
}

/// The pid of the live process training in `run_dir` now, if any: how a dashboard knows
/// whether a run is running.
pub fn live_holder(run_dir: &Path) -> Option<u32> {
    read_holder(&run_dir.join(LOCK_FILE))
        .ok()
        .flatten()
        .filter(|&pid| process_alive(pid))
}

/// The pid in a lock file; `None` for an empty or garbled file (a writer killed mid-write).
fn read_holder(path: &Path) -> Result<Option<u32>> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(text.trim().parse().ok()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(ModelError::io(path, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_live_holder_is_named_and_drop_releases() {
        let dir = tempfile::tempdir().unwrap();
        let run = dir.path().join("run");
        std::fs::create_dir_all(&run).unwrap();
        // Process 1 (init) always runs.
        std::fs::write(run.join(LOCK_FILE), "1\n").unwrap();
        let err = RunLock::acquire(&run).unwrap_err().to_string();
        assert!(err.contains("in use by another anetrain (pid 1)"), "{err}");
        std::fs::remove_file(run.join(LOCK_FILE)).unwrap();
        let lock = RunLock::acquire(&run).unwrap();
        assert_eq!(lock.took_over_from(), None);
        // A second trainer of this process is refused, and leaves the first one's lock alone.
        let err = RunLock::acquire(&run).unwrap_err().to_string();
        assert!(err.contains("another trainer of this process"), "{err}");
        assert!(run.join(LOCK_FILE).exists());
        drop(lock);
        assert!(!run.join(LOCK_FILE).exists());
        // This process's pid in the file (as after an exec restart) is its own lock.
        std::fs::write(run.join(LOCK_FILE), format!("{}\n", std::process::id())).unwrap();
        drop(RunLock::acquire(&run).unwrap());
        assert!(!run.join(LOCK_FILE).exists());
    }

    #[test]
    fn a_directory_the_lock_created_goes_when_the_run_left_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let run = dir.path().join("fresh");
        drop(RunLock::acquire(&run).unwrap());
        assert!(!run.exists());
    }

    #[test]
    fn a_dead_holder_is_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        // Pids are below 2^22 on Linux and 99999 on macOS.
        std::fs::write(dir.path().join(LOCK_FILE), "4000000000\n").unwrap();
        let lock = RunLock::acquire(dir.path()).unwrap();
        assert_eq!(lock.took_over_from(), Some(4_000_000_000));
        let text = std::fs::read_to_string(dir.path().join(LOCK_FILE)).unwrap();
        assert_eq!(text.trim(), std::process::id().to_string());
    }

    #[test]
    fn the_live_holder_is_the_locking_process_and_none_for_a_dead_or_no_lock() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(live_holder(dir.path()), None);
        std::fs::write(dir.path().join(LOCK_FILE), "4000000000\n").unwrap();
        assert_eq!(live_holder(dir.path()), None);
        let lock = RunLock::acquire(dir.path()).unwrap();
        assert_eq!(live_holder(dir.path()), Some(std::process::id()));
        drop(lock);
        assert_eq!(live_holder(dir.path()), None);
    }
}
