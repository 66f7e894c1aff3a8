//! Raw UTF-8 text files tokenized when loaded.

use crate::error::{DataError, Result};
use crate::stream::{TokenStream, Tokens};
use crate::tokenizer::Tokenizer;
use std::path::Path;

/// The line that separates documents in a text file: the convention of the TinyStories text
/// releases. A file without it is one document.
pub const DOCUMENT_SEPARATOR: &str = "<|endoftext|>";

/// A text file tokenized in memory, in the same layout as llama2.c's pretokenized shards.
///
/// Documents are separated by lines holding only [`DOCUMENT_SEPARATOR`]; a file without such a
/// line is a single document. Blank lines are *not* boundaries, because prose and plays (e.g.
/// Shakespeare) use them inside a document, and splitting there would put a BOS every few lines.
/// Each document is trimmed of surrounding whitespace, tokenized in one call (so tokenization
/// matches what a tokenizer does to the whole document), and preceded by BOS. A tokenizer
/// without BOS gets EOS after each document instead (Qwen's convention); one with neither
/// concatenates documents unmarked.
///
/// Loading costs what the tokenizer costs: about 2 s per MB of text with the Llama 2
/// tokenizer on one core, so large corpora belong in pretokenized shards ([`crate::ShardSet`]).
pub struct TextDataset {
    tokens: Tokens,
    documents: usize,
}

impl TextDataset {
    /// Reads and tokenizes `path`. Non-UTF-8 input is an error naming the byte offset.
    pub fn from_file(path: impl AsRef<Path>, tokenizer: &dyn Tokenizer) -> Result<Self> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
        let text = std::str::from_utf8(&bytes).map_err(|e| DataError::NotUtf8 {
            path: path.to_path_buf(),
            offset: e.valid_up_to(),
        })?;
        let dataset = Self::from_text(text, tokenizer)?;
        if dataset.tokens.is_empty() {
            return Err(DataError::Config(format!(
                "{} has no text to train on; pass a non-empty text file",
                path.display()
            )));
        }
        Ok(dataset)
    }

    /// Tokenizes `text` as [`TextDataset::from_file`] does with a file's contents.
    pub fn from_text(text: &str, tokenizer: &dyn Tokenizer) -> Result<Self> {
        let documents: Vec<&str> = split_documents(text).collect();
        let tokens = tokenize_documents(documents.iter().copied(), tokenizer)?;
        Ok(TextDataset {
            tokens: Tokens::new(tokens),
            documents: documents.len(),
        })
    }

    /// Number of documents found.
    pub fn documents(&self) -> usize {
        self.documents
    }

    /// The token ids.
    pub fn tokens(&self) -> &Tokens {
        &self.tokens
    }
}

impl TokenStream for TextDataset {
    fn len(&self) -> usize {
        self.tokens.len()
    }

    fn read(&self, start: usize, out: &mut [u32]) -> Result<()> {
        self.tokens.read(start, out)
    }
}

/// Non-empty, trimmed documents of `text`, split at [`DOCUMENT_SEPARATOR`] lines.
fn split_documents(text: &str) -> impl Iterator<Item = &str> {
    let mut rest = text;
    std::iter::from_fn(move || loop {
        if rest.is_empty() {
            return None;
        }
        let (doc, next) =
            next_separator(rest).map_or((rest, ""), |(start, end)| (&rest[..start], &rest[end..]));
        rest = next;
        let doc = doc.trim();
        if !doc.is_empty() {
            return Some(doc);
        }
    })
}

/// Byte range of the first separator line in `text` (the marker alone on its line, surrounding
/// spaces allowed), or `None`.
fn next_separator(text: &str) -> Option<(usize, usize)> {
    let mut line_start = 0;
    for line in text.split_inclusive('\n') {
        let line_end = line_start + line.len();
        if line.trim() == DOCUMENT_SEPARATOR {
            return Some((line_start, line_end));
        }
        line_start = line_end;
    }
    None
}

/// Tokenizes each document and joins them with the tokenizer's document markers (see
/// [`TextDataset`]): BOS before each, else EOS after each.
pub(crate) fn tokenize_documents<'a>(
    documents: impl Iterator<Item = &'a str>,
    tokenizer: &dyn Tokenizer,
) -> Result<Vec<u32>> {
    let mut ids = Vec::new();
    for doc in documents {
        ids.extend(tokenizer.bos());
        ids.extend(tokenizer.encode(doc)?);
        if tokenizer.bos().is_none() {
            ids.extend(tokenizer.eos());
        }
    }
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tokenizer::ByteTokenizer;

    const BOS: u32 = ByteTokenizer::BOS;

    fn bytes(s: &str) -> Vec<u32> {
        s.bytes().map(u32::from).collect()
    }

    #[test]
    fn file_without_separator_is_one_document_with_bos() {
        let data = TextDataset::from_text("Hello\n\nworld\n", &ByteTokenizer).unwrap();
        assert_eq!(data.documents(), 1);
        let mut expected = vec![BOS];
        expected.extend(bytes("Hello\n\nworld"));
        assert_eq!(data.tokens().as_slice(), expected.as_slice());
    }

    #[test]
    fn separator_lines_split_documents() {
        let text = "One day.\n<|endoftext|>\nTwo days.\n  <|endoftext|>  \n\n<|endoftext|>\nEnd";
        let data = TextDataset::from_text(text, &ByteTokenizer).unwrap();
        assert_eq!(data.documents(), 3);
        let mut expected = vec![BOS];
        expected.extend(bytes("One day."));
        expected.push(BOS);
        expected.extend(bytes("Two days."));
        expected.push(BOS);
        expected.extend(bytes("End"));
        assert_eq!(data.tokens().as_slice(), expected.as_slice());
    }

    #[test]
    fn separator_inside_a_line_is_text() {
        let data = TextDataset::from_text("a <|endoftext|> b", &ByteTokenizer).unwrap();
        assert_eq!(data.documents(), 1);
    }

    #[test]
    fn non_utf8_file_names_the_byte_offset() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.txt");
        std::fs::write(&path, b"hello \xFF world").unwrap();
        let err = TextDataset::from_file(&path, &ByteTokenizer)
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("bad.txt") && err.contains("byte offset 6"),
            "{err}"
        );
    }

    #[test]
    fn whitespace_only_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("blank.txt");
        std::fs::write(&path, "\n \n").unwrap();
        let err = TextDataset::from_file(&path, &ByteTokenizer).err().unwrap();
        assert!(err.to_string().contains("no text"), "{err}");
    }
}
