//! Kernel identity: a content hash of (MIL text, weight files) that keys the compiled-kernel
//! cache and goes into the program's `buildInfo` as a nonce (ane-reference §1.9).
//!
//! `aned` caches compiled programs by a hash of the MIL, and the framework names the model's
//! temp directory after a hash of the MIL text, the weights and the options (§1.9,
//! correction). Stamping our own key into `buildInfo` makes the text differ whenever the
//! weights do. A second entry, unique to each compiled instance ([`instance_id`]), makes every
//! compile's directory its own: `unloadWithQoS:` deletes that directory, so two devices or two
//! processes compiling the same program must never share it.

use crate::Result;
use anetrain_mil::{Program, WeightFiles};
use std::collections::HashMap;
use std::fmt;

/// The `buildInfo` entry that carries the kernel key.
pub const NONCE_KEY: &str = "anetrain-kernel";

/// The `buildInfo` entry that makes each compiled instance's text, and so its directory, unique.
pub const INSTANCE_KEY: &str = "anetrain-instance";

/// An id no other compile in this or any concurrent process gets: the process id, a counter
/// and the start time in nanoseconds (so a recycled pid after a crash differs too).
pub fn instance_id() -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{}-{n}-{nanos}", std::process::id())
}

const FNV128_OFFSET: u128 = 0x6c62_272e_07bb_0142_62b8_2175_6295_c58d;
const FNV128_PRIME: u128 = 0x0000_0000_0100_0000_0000_0000_0000_013b;

/// 128-bit FNV-1a, a stable, dependency-free content hash (not cryptographic: the inputs are
/// our own programs, not adversarial). Costs one 128-bit multiply per byte.
#[derive(Clone, Copy, Debug)]
pub struct Fnv128(u128);

impl Fnv128 {
    /// A hasher in its initial state.
    pub fn new() -> Fnv128 {
        Fnv128(FNV128_OFFSET)
    }

    /// Mixes `bytes` in.
    pub fn update(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u128::from(b)).wrapping_mul(FNV128_PRIME);
        }
    }

    /// Mixes in `bytes` preceded by their length, so that concatenations of different parts
    /// never hash alike.
    pub fn update_framed(&mut self, bytes: &[u8]) {
        self.update(&(bytes.len() as u64).to_le_bytes());
        self.update(bytes);
    }

    /// The hash so far.
    pub fn finish(&self) -> u128 {
        self.0
    }
}

impl Default for Fnv128 {
    fn default() -> Fnv128 {
        Fnv128::new()
    }
}

/// The identity of one compiled kernel: a hash of its unstamped MIL text and every weight file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KernelKey(pub u128);

impl KernelKey {
    /// The key of `mil_text` (without the nonce) compiled with `weights`.
    pub fn new(mil_text: &str, weights: &WeightFiles) -> KernelKey {
        let mut h = Fnv128::new();
        h.update_framed(mil_text.as_bytes());
        for (path, bytes) in weights.iter() {
            h.update_framed(path.as_bytes());
            h.update_framed(bytes);
        }
        KernelKey(h.finish())
    }
}

impl fmt::Display for KernelKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

/// The text to compile and its key: `program` is printed without any earlier stamps, hashed
/// with `weights` (the key, which ignores `instance`), stamped with the key and `instance`,
/// and printed again. `print` is the MIL printer ([`anetrain_mil::print_program`] in the
/// device); `instance` comes from [`instance_id`].
pub fn stamped_text(
    program: &Program,
    weights: &WeightFiles,
    instance: &str,
    print: impl Fn(&Program) -> String,
) -> (KernelKey, String) {
    let mut unstamped = program.clone();
    unstamped
        .build_info
        .retain(|(k, _)| k != NONCE_KEY && k != INSTANCE_KEY);
    let key = KernelKey::new(&print(&unstamped), weights);
    let mut stamped = unstamped;
    stamped
        .build_info
        .push((NONCE_KEY.to_string(), key.to_string()));
    stamped
        .build_info
        .push((INSTANCE_KEY.to_string(), instance.to_string()));
    (key, print(&stamped))
}

/// Compiled kernels by key, so that nothing compiles twice in one process.
#[derive(Debug)]
pub struct KernelCache<T> {
    entries: HashMap<KernelKey, T>,
}

impl<T: Clone> KernelCache<T> {
    /// An empty cache.
    pub fn new() -> KernelCache<T> {
        KernelCache {
            entries: HashMap::new(),
        }
    }

    /// The entry for `key`, built by `build` on a miss. A failed build caches nothing.
    pub fn get_or_try_insert(
        &mut self,
        key: KernelKey,
        build: impl FnOnce() -> Result<T>,
    ) -> Result<T> {
        if let Some(hit) = self.entries.get(&key) {
            return Ok(hit.clone());
        }
        let value = build()?;
        self.entries.insert(key, value.clone());
        Ok(value)
    }

    /// Number of cached kernels.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

impl<T: Clone> Default for KernelCache<T> {
    fn default() -> KernelCache<T> {
        KernelCache::new()
    }
}
