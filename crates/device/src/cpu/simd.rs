//! One list of the instruction sets the hot element loops are compiled for.

/// Compiles the function it wraps for AVX-512, AVX2+FMA and SSE4.2 on x86-64 and NEON on
/// aarch64 besides the baseline, and picks the widest the CPU has at run time (the
/// `multiversion` crate; its `simd` preset stops at AVX2, which halves the lanes of these
/// loops on AVX-512 machines). Rust neither fuses nor reassociates float arithmetic, so every
/// version computes the same bits. The calling crate depends on `multiversion`.
#[macro_export]
macro_rules! simd_versions {
    ($($function:tt)*) => {
        #[multiversion::multiversion(targets(
            "x86_64+avx512f+avx512bw+avx512cd+avx512dq+avx512vl",
            "x86_64+avx2+fma",
            "x86_64+sse4.2",
            "aarch64+neon",
        ))]
        $($function)*
    };
}
