//! Facts about the machine the devices run on that layers above ask before committing to
//! work: how much memory is free, and whether a process still runs. Platform code lives here so
//! nothing above `device` knows which operating system it is on.

/// Bytes of memory available to a new allocation without swapping, or `None` where the
/// platform does not say (callers then skip their memory checks).
pub fn available_memory() -> Option<u64> {
    imp::available_memory()
}

/// Whether a process with id `pid` exists (possibly owned by another user).
pub fn process_alive(pid: u32) -> bool {
    imp::process_alive(pid)
}

/// Fails with a message naming `what` and `fix` when `bytes` exceed the available memory.
pub fn ensure_memory(bytes: u64, what: &str, fix: &str) -> Result<(), String> {
    match available_memory() {
        Some(free) if bytes > free => Err(format!(
            "{what} needs {} but only {} of memory is available; {fix}",
            human_bytes(bytes),
            human_bytes(free)
        )),
        _ => Ok(()),
    }
}

/// `bytes` in the largest binary unit that keeps a number of at least 1 (e.g. `1.5 GiB`).
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(target_os = "linux")]
mod imp {
    pub fn available_memory() -> Option<u64> {
        let text = std::fs::read_to_string("/proc/meminfo").ok()?;
        let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
        let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        kib.checked_mul(1024)
    }

    pub fn process_alive(pid: u32) -> bool {
        super::unix_process_alive(pid)
    }
}

#[cfg(target_os = "macos")]
mod imp {
    /// Physical memory (`hw.memsize`): macOS compresses and pages so freely that its free-page
    /// count says little; only a request larger than the machine is certain to fail.
    pub fn available_memory() -> Option<u64> {
        let mut size: u64 = 0;
        let mut len = std::mem::size_of::<u64>();
        // SAFETY: the name is NUL-terminated and `size`/`len` describe a valid u64 buffer.
        let rc = unsafe {
            libc::sysctlbyname(
                c"hw.memsize".as_ptr(),
                (&mut size as *mut u64).cast(),
                &mut len,
                std::ptr::null_mut(),
                0,
            )
        };
        (rc == 0).then_some(size)
    }

    pub fn process_alive(pid: u32) -> bool {
        super::unix_process_alive(pid)
    }
}

#[cfg(not(any(target_os = "linux", target_os = "macos")))]
mod imp {
    pub fn available_memory() -> Option<u64> {
        None
    }

    /// Without a way to ask, every holder counts as alive: a lock is never stolen.
    pub fn process_alive(_pid: u32) -> bool {
        true
    }
}

#[cfg(unix)]
fn unix_process_alive(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    if pid <= 0 {
        return false;
    }
    // SAFETY: signal 0 only checks that the process exists and may be signalled.
    let rc = unsafe { libc::kill(pid, 0) };
    // EPERM: the process exists but belongs to someone else.
    rc == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_and_memory_is_known_here() {
        assert!(process_alive(std::process::id()));
        assert!(!process_alive(0));
        assert!(available_memory().is_some_and(|m| m > 0));
    }

    #[test]
    fn sizes_print_in_binary_units() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(3 << 29), "1.5 GiB");
        assert!(ensure_memory(u64::MAX, "the model", "use a smaller one")
            .unwrap_err()
            .contains("use a smaller one"));
    }
}
