//! What the benchmarks share: medians of timed samples and the process's peak memory.

/// Median of a non-empty sample (the upper middle one for an even count).
pub fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

/// Peak resident set size of this process so far in MiB (`getrusage`), if the OS reports it.
pub fn peak_rss_mib() -> Option<f64> {
    // SAFETY: `rusage` is plain data, so all-zero is a valid value, and getrusage only writes
    // into the struct it is given.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        (libc::getrusage(libc::RUSAGE_SELF, &mut usage) == 0).then_some(usage)
    }?;
    // macOS reports bytes, Linux and the BSDs kibibytes.
    let unit = if cfg!(target_os = "macos") {
        1.0
    } else {
        1024.0
    };
    Some(usage.ru_maxrss as f64 * unit / 1048576.0).filter(|&m| m > 0.0)
}

/// [`peak_rss_mib`] for printing: `476 MiB`, or `n/a`.
pub fn peak_rss() -> String {
    peak_rss_mib().map_or("n/a".into(), |m| format!("{m:.0} MiB"))
}
