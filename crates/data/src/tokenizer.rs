//! The tokenizer interface and the built-in byte-level tokenizer.

use crate::error::{DataError, Result};

/// Turns text into token ids and back.
///
/// `encode` never adds BOS/EOS: datasets insert [`Tokenizer::bos`] themselves (one before each
/// document, the llama2.c convention), so every tokenizer behaves the same way there. `decode`
/// drops special tokens such as BOS/EOS, because they are markers rather than text.
pub trait Tokenizer: Send + Sync {
    /// Token ids of `text`, without special tokens.
    fn encode(&self, text: &str) -> Result<Vec<u32>>;

    /// Text of `ids`; invalid UTF-8 from byte tokens becomes U+FFFD. An id outside the
    /// vocabulary is an error.
    fn decode(&self, ids: &[u32]) -> Result<String>;

    /// Number of token ids, special tokens included; every id is below it.
    fn vocab_size(&self) -> usize;

    /// The beginning-of-sequence id, if the tokenizer has one.
    fn bos(&self) -> Option<u32>;

    /// The end-of-sequence id, if the tokenizer has one; generation stops there.
    fn eos(&self) -> Option<u32>;

    /// Whether `id` is a special token (a marker such as BOS, EOS or a chat template's
    /// end-of-turn, which `decode` drops) rather than text.
    fn is_special(&self, id: u32) -> bool {
        Some(id) == self.bos() || Some(id) == self.eos()
    }

    /// A hash that changes whenever the tokenizer's output could, keying caches of tokenized
    /// files; `None` (never cached) unless the tokenizer knows one.
    fn fingerprint(&self) -> Option<u64> {
        None
    }
}

/// A tokenizer that needs no file: ids `0..=255` are the UTF-8 bytes of the text, then
/// [`ByteTokenizer::BOS`] = 256 and [`ByteTokenizer::EOS`] = 257, a vocabulary of 258.
///
/// It lets the quick start and the tests train without downloading anything, at the price of
/// about four times more tokens per text than a BPE vocabulary.
#[derive(Clone, Copy, Debug, Default)]
pub struct ByteTokenizer;

impl ByteTokenizer {
    /// Beginning-of-sequence id.
    pub const BOS: u32 = 256;
    /// End-of-sequence id.
    pub const EOS: u32 = 257;
    /// Vocabulary size: 256 bytes plus BOS and EOS.
    pub const VOCAB_SIZE: usize = 258;
}

impl Tokenizer for ByteTokenizer {
    fn encode(&self, text: &str) -> Result<Vec<u32>> {
        Ok(text.bytes().map(u32::from).collect())
    }

    fn decode(&self, ids: &[u32]) -> Result<String> {
        let mut bytes = Vec::with_capacity(ids.len());
        for &id in ids {
            match u8::try_from(id) {
                Ok(byte) => bytes.push(byte),
                Err(_) if id == Self::BOS || id == Self::EOS => {}
                Err(_) => {
                    return Err(DataError::UnknownTokenId {
                        id,
                        vocab_size: Self::VOCAB_SIZE,
                    })
                }
            }
        }
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    fn vocab_size(&self) -> usize {
        Self::VOCAB_SIZE
    }

    fn bos(&self) -> Option<u32> {
        Some(Self::BOS)
    }

    fn eos(&self) -> Option<u32> {
        Some(Self::EOS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn byte_tokenizer_round_trips_any_string(text in ".*") {
            let tok = ByteTokenizer;
            let ids = tok.encode(&text)?;
            prop_assert_eq!(ids.len(), text.len());
            prop_assert!(ids.iter().all(|&id| id < 256));
            prop_assert_eq!(tok.decode(&ids)?, text);
        }
    }

    #[test]
    fn byte_ids_are_the_utf8_bytes() {
        let ids = ByteTokenizer.encode("aé").unwrap();
        assert_eq!(ids, vec![0x61, 0xC3, 0xA9]);
    }

    #[test]
    fn decode_skips_bos_eos_and_replaces_broken_utf8() {
        let tok = ByteTokenizer;
        let ids = [ByteTokenizer::BOS, 0x68, 0x69, 0xC3, ByteTokenizer::EOS];
        assert_eq!(tok.decode(&ids).unwrap(), "hi\u{FFFD}");
    }

    #[test]
    fn decode_rejects_ids_past_the_vocabulary() {
        let err = ByteTokenizer.decode(&[65, 258]).unwrap_err().to_string();
        assert!(err.contains("258") && err.contains("258 tokens"), "{err}");
    }
}
