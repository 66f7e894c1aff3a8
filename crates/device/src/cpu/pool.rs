//! Reuse of tensor storage between the ops of a run and across runs.

/// Freed `Vec<f32>` buffers kept for the next op that needs one, so the steady-state run loop
/// does not go back to the allocator (and the kernel pages stay mapped).
#[derive(Debug, Default)]
pub(crate) struct Pool {
    free: Vec<Vec<f32>>,
}

impl Pool {
    /// A buffer of `len` elements holding whatever an earlier op left there, so every caller
    /// must write all of it (every op here does): zeroing a buffer that is about to be
    /// overwritten is a single-threaded pass over memory that no one reads. Reuses the
    /// smallest free buffer that fits; only elements beyond its old length are zero-filled.
    pub fn take_for_write(&mut self, len: usize) -> Vec<f32> {
        let best = self
            .free
            .iter()
            .enumerate()
            .filter(|(_, v)| v.capacity() >= len)
            .min_by_key(|(_, v)| v.capacity())
            .map(|(i, _)| i);
        match best {
            Some(i) => {
                let mut v = self.free.swap_remove(i);
                v.truncate(len);
                v.resize(len, 0.0);
                v
            }
            None => vec![0.0; len],
        }
    }

    /// Keeps `buf` for reuse.
    pub fn put(&mut self, buf: Vec<f32>) {
        if buf.capacity() > 0 {
            self.free.push(buf);
        }
    }
}
