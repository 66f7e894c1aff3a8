//! Hugging Face `tokenizer.json` tokenizers (Llama 2, Mistral, Qwen, ...) through the
//! `tokenizers` crate.

use crate::error::{DataError, Result};
use crate::tokenizer::Tokenizer;
use std::path::Path;

/// Special-token spellings tried, in order, for the beginning of a sequence.
const BOS_NAMES: &[&str] = &["<s>", "<|begin_of_text|>", "<bos>"];
/// Special-token spellings tried, in order, for the end of a sequence (Qwen uses
/// `<|endoftext|>` and has no BOS).
const EOS_NAMES: &[&str] = &["</s>", "<|end_of_text|>", "<|endoftext|>", "<eos>"];

/// A tokenizer loaded from a Hugging Face `tokenizer.json`.
pub struct HfTokenizer {
    inner: tokenizers::Tokenizer,
    path: String,
    vocab_size: usize,
    bos: Option<u32>,
    eos: Option<u32>,
    /// Hash of the `tokenizer.json` bytes, keying token caches.
    fingerprint: u64,
}

impl HfTokenizer {
    /// Loads `path`; BOS/EOS are found by their usual spellings (`<s>`/`</s>`,
    /// `<|endoftext|>`, ...), and are `None` when the vocabulary has none of them.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let shown = path.display().to_string();
        if !path.is_file() {
            return Err(DataError::Tokenizer {
                path: shown,
                message: "no such file; pass the path of a Hugging Face tokenizer.json, or \
                          --tokenizer byte for the built-in byte tokenizer"
                    .into(),
            });
        }
        let mut inner =
            tokenizers::Tokenizer::from_file(path).map_err(|e| DataError::Tokenizer {
                path: shown.clone(),
                message: format!("cannot load it as a Hugging Face tokenizer.json: {e}"),
            })?;
        // Some tokenizer.json files carry truncation or padding meant for fixed-length
        // classification; datasets encode whole documents, which those would silently cut.
        inner
            .with_truncation(None)
            .map_err(|e| DataError::Tokenizer {
                path: shown.clone(),
                message: format!("cannot turn off its truncation: {e}"),
            })?;
        inner.with_padding(None);
        let find = |names: &[&str]| names.iter().find_map(|n| inner.token_to_id(n));
        let bos = find(BOS_NAMES);
        let eos = find(EOS_NAMES);
        let vocab_size = inner.get_vocab_size(true);
        let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
        Ok(HfTokenizer {
            inner,
            path: shown,
            vocab_size,
            bos,
            eos,
            fingerprint: crate::rng::fnv1a(&bytes),
        })
    }

    fn error(&self, what: &str, e: impl std::fmt::Display) -> DataError {
        DataError::Tokenizer {
            path: self.path.clone(),
            message: format!("{what} failed: {e}"),
        }
    }
}

impl Tokenizer for HfTokenizer {
    fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let encoding = self
            .inner
            .encode(text, false)
            .map_err(|e| self.error("encode", e))?;
        Ok(encoding.get_ids().to_vec())
    }

    fn decode(&self, ids: &[u32]) -> Result<String> {
        // The tokenizers crate skips unknown ids silently; a wrong id here means the model and
        // tokenizer disagree, which the user must hear about.
        if let Some(&id) = ids.iter().find(|&&id| id as usize >= self.vocab_size) {
            return Err(DataError::UnknownTokenId {
                id,
                vocab_size: self.vocab_size,
            });
        }
        self.inner
            .decode(ids, true)
            .map_err(|e| self.error("decode", e))
    }

    fn vocab_size(&self) -> usize {
        self.vocab_size
    }

    fn bos(&self) -> Option<u32> {
        self.bos
    }

    fn eos(&self) -> Option<u32> {
        self.eos
    }

    fn is_special(&self, id: u32) -> bool {
        self.inner
            .get_added_vocabulary()
            .get_added_tokens_decoder()
            .get(&id)
            .is_some_and(|t| t.special)
    }

    fn fingerprint(&self) -> Option<u64> {
        Some(self.fingerprint)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_file_names_the_path_and_the_alternative() {
        let err = HfTokenizer::from_file("/nonexistent/tokenizer.json")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("/nonexistent/tokenizer.json"), "{err}");
        assert!(err.contains("--tokenizer byte"), "{err}");
    }

    /// A word-level tokenizer.json whose file asks for truncation to 2 tokens and right padding.
    const TINY_TOKENIZER: &str = r#"{
        "version": "1.0",
        "truncation": {"direction": "Right", "max_length": 2, "strategy": "LongestFirst", "stride": 0},
        "padding": {"strategy": {"Fixed": 8}, "direction": "Right", "pad_to_multiple_of": null,
                    "pad_id": 3, "pad_type_id": 0, "pad_token": "[UNK]"},
        "added_tokens": [
            {"id": 4, "content": "<s>", "single_word": false, "lstrip": false, "rstrip": false,
             "normalized": false, "special": true},
            {"id": 5, "content": "</s>", "single_word": false, "lstrip": false, "rstrip": false,
             "normalized": false, "special": true}
        ],
        "normalizer": null,
        "pre_tokenizer": {"type": "Whitespace"},
        "post_processor": null,
        "decoder": null,
        "model": {"type": "WordLevel", "vocab": {"a": 0, "b": 1, "c": 2, "[UNK]": 3},
                  "unk_token": "[UNK]"}
    }"#;

    #[test]
    fn tokenizer_json_loads_without_truncation_or_padding() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokenizer.json");
        std::fs::write(&path, TINY_TOKENIZER).unwrap();
        let tok = HfTokenizer::from_file(&path).unwrap();
        assert_eq!(tok.vocab_size(), 6);
        assert_eq!((tok.bos(), tok.eos()), (Some(4), Some(5)));
        // Five words survive the file's max_length of 2, and no padding ids are appended.
        assert_eq!(tok.encode("a b c b a").unwrap(), vec![0, 1, 2, 1, 0]);
        assert_eq!(tok.decode(&[4, 0, 2, 5]).unwrap(), "a c");
        let err = tok.decode(&[0, 6]).unwrap_err().to_string();
        assert!(
            err.contains("token id 6") && err.contains("6 tokens"),
            "{err}"
        );
    }

    #[test]
    fn malformed_json_is_a_tokenizer_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokenizer.json");
        std::fs::write(&path, "{ not json").unwrap();
        let err = HfTokenizer::from_file(&path).err().map(|e| e.to_string());
        let err = err.unwrap_or_default();
        assert!(err.contains("cannot load"), "{err}");
    }
}
