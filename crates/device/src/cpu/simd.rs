//! How hot element loops fill the vector registers: one list of the instruction sets they
//! are compiled for, and the fixed-lane fold their reductions share.

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

/// Folds `x` into `L` independent accumulators (element `i` into accumulator `i mod L`),
/// merges them in order, then folds in the tail. One serial accumulator is a chain of
/// dependent operations the compiler may not reorder (a full add latency per element); `L`
/// chains fill the vector registers. The order depends on the length alone, so the result is
/// the same bits on every instruction set. Always inlined, so it runs in its caller's vectors.
#[inline(always)]
pub fn fold_lanes<const L: usize, A: Copy>(
    x: &[f32],
    init: A,
    step: impl Fn(A, f32) -> A,
    merge: impl Fn(A, A) -> A,
) -> A {
    let mut acc = [init; L];
    let chunks = x.chunks_exact(L);
    let tail = chunks.remainder();
    for c in chunks {
        for (a, &v) in acc.iter_mut().zip(c) {
            *a = step(*a, v);
        }
    }
    let merged = acc.iter().fold(init, |a, &v| merge(a, v));
    tail.iter().fold(merged, |a, &v| step(a, v))
}
