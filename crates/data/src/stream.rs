//! Token streams: one flat sequence of token ids, whatever stores it.

use crate::error::{DataError, Result};
use std::ops::Range;
use std::sync::Arc;

/// A read-only sequence of token ids (in memory, memory-mapped shards, or a window of either).
///
/// Documents are concatenated with a BOS id before each, as in llama2.c, so a stream is just
/// ids; batching cuts it into fixed windows without looking at document boundaries.
pub trait TokenStream: Send + Sync {
    /// Number of tokens.
    fn len(&self) -> usize;

    /// Whether the stream has no tokens.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Copies tokens `start .. start + out.len()` into `out` (no allocation, so the batching hot
    /// path can reuse one buffer). Reading past the end is [`DataError::OutOfRange`].
    fn read(&self, start: usize, out: &mut [u32]) -> Result<()>;

    /// Tokens in `range`, freshly allocated; for tests and one-off reads.
    fn get(&self, range: Range<usize>) -> Result<Vec<u32>> {
        let mut out = vec![0; range.end.saturating_sub(range.start)];
        self.read(range.start, &mut out)?;
        Ok(out)
    }

    /// Human-readable location of token `index` for error messages, e.g. with the shard's file.
    fn describe_position(&self, index: usize) -> String {
        format!("token {index}")
    }
}

/// Checks that `start .. start + n` lies within a stream of `len` tokens.
pub(crate) fn check_range(start: usize, n: usize, len: usize) -> Result<()> {
    match start.checked_add(n) {
        Some(end) if end <= len => Ok(()),
        _ => Err(DataError::OutOfRange {
            start,
            end: start.saturating_add(n),
            len,
        }),
    }
}

/// Token ids held in memory (tokenized text, the synthetic corpus, tests).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tokens {
    ids: Vec<u32>,
}

impl Tokens {
    /// Wraps `ids`.
    pub fn new(ids: Vec<u32>) -> Self {
        Tokens { ids }
    }

    /// The ids as a slice.
    pub fn as_slice(&self) -> &[u32] {
        &self.ids
    }

    /// The ids, consuming `self`.
    pub fn into_vec(self) -> Vec<u32> {
        self.ids
    }
}

impl From<Vec<u32>> for Tokens {
    fn from(ids: Vec<u32>) -> Self {
        Tokens::new(ids)
    }
}

impl TokenStream for Tokens {
    fn len(&self) -> usize {
        self.ids.len()
    }

    fn read(&self, start: usize, out: &mut [u32]) -> Result<()> {
        check_range(start, out.len(), self.ids.len())?;
        out.copy_from_slice(&self.ids[start..start + out.len()]);
        Ok(())
    }
}

/// A contiguous part `range` of another stream, itself a stream; how a train/validation split
/// shares one dataset without copying it.
#[derive(Clone)]
pub struct Window {
    inner: Arc<dyn TokenStream>,
    range: Range<usize>,
}

impl Window {
    /// The tokens `range` of `inner`; a range past the end of `inner` is an error.
    pub fn new(inner: Arc<dyn TokenStream>, range: Range<usize>) -> Result<Self> {
        if range.start > range.end || range.end > inner.len() {
            return Err(DataError::OutOfRange {
                start: range.start,
                end: range.end,
                len: inner.len(),
            });
        }
        Ok(Window { inner, range })
    }

    /// Where this window lies in the underlying stream.
    pub fn range(&self) -> Range<usize> {
        self.range.clone()
    }
}

impl TokenStream for Window {
    fn len(&self) -> usize {
        self.range.len()
    }

    fn read(&self, start: usize, out: &mut [u32]) -> Result<()> {
        check_range(start, out.len(), self.len())?;
        self.inner.read(self.range.start + start, out)
    }

    fn describe_position(&self, index: usize) -> String {
        self.inner.describe_position(self.range.start + index)
    }
}

/// Tokens scanned per read by [`validate_vocab`]: 256 KiB of ids, small enough for cache.
const VALIDATE_CHUNK: usize = 1 << 16;

/// Fails on the first id `>= vocab_size`, naming its position, so a dataset tokenized for a
/// different model is caught before training rather than as an out-of-bounds embedding row.
///
/// One linear pass over the stream (a few milliseconds per million tokens).
pub fn validate_vocab(stream: &dyn TokenStream, vocab_size: usize) -> Result<()> {
    let mut buf = vec![0u32; VALIDATE_CHUNK.min(stream.len())];
    let mut start = 0;
    while start < stream.len() {
        let n = buf.len().min(stream.len() - start);
        stream.read(start, &mut buf[..n])?;
        if let Some(offset) = buf[..n].iter().position(|&id| id as usize >= vocab_size) {
            return Err(DataError::TokenOutOfVocab {
                id: buf[offset],
                position: stream.describe_position(start + offset),
                vocab_size,
            });
        }
        start += n;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_memory_reads_and_range_errors() {
        let t = Tokens::new((0..10).collect());
        assert_eq!(t.get(3..6).unwrap(), vec![3, 4, 5]);
        assert_eq!(t.get(10..10).unwrap(), Vec::<u32>::new());
        let err = t.get(8..11).unwrap_err().to_string();
        assert!(err.contains("8..11") && err.contains("10 tokens"), "{err}");
    }

    #[test]
    fn window_offsets_reads_and_positions() {
        let t: Arc<dyn TokenStream> = Arc::new(Tokens::new((0..100).collect()));
        let w = Window::new(t.clone(), 40..60).unwrap();
        assert_eq!(w.len(), 20);
        assert_eq!(w.get(0..3).unwrap(), vec![40, 41, 42]);
        assert!(w.get(18..21).is_err());
        assert_eq!(w.describe_position(5), "token 45");
        assert!(Window::new(t, 90..101).is_err());
    }

    #[test]
    fn validate_vocab_accepts_ids_below_the_vocabulary() {
        let t = Tokens::new(vec![0, 5, 9, 9, 1]);
        assert!(validate_vocab(&t, 10).is_ok());
    }

    #[test]
    fn validate_vocab_names_the_first_bad_position_and_the_fix() {
        // Past one scan chunk, so the position must include the chunk offset.
        let mut ids = vec![3u32; VALIDATE_CHUNK + 100];
        ids[VALIDATE_CHUNK + 7] = 12;
        ids[VALIDATE_CHUNK + 50] = 99;
        let err = validate_vocab(&Tokens::new(ids), 10)
            .unwrap_err()
            .to_string();
        let position = format!("token {}", VALIDATE_CHUNK + 7);
        assert!(err.contains(&position), "{err}");
        assert!(err.contains("token id 12"), "{err}");
        assert!(err.contains("model's 10"), "{err}");
        assert!(err.contains("--tokenizer/--model"), "{err}");
    }
}
