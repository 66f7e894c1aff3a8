//! Raw UTF-8 text files tokenized when loaded.

use crate::error::{DataError, Result};
use crate::stream::{TokenStream, Tokens};
use crate::tokenizer::Tokenizer;
use std::io::BufRead;
use std::path::Path;

/// The line that separates documents in a text file: the convention of the TinyStories text
/// releases. A file without it is one document.
pub const DOCUMENT_SEPARATOR: &str = "<|endoftext|>";

/// Bytes of text handed to the tokenizer per call: tokenizers need tens of bytes of memory
/// per byte of input, so whole documents (a play, a book) are tokenized in pieces of this size.
pub(crate) const CHUNK_BYTES: usize = 1 << 16;

/// A text file tokenized in memory, in the same layout as llama2.c's pretokenized shards.
///
/// Documents are separated by lines holding only [`DOCUMENT_SEPARATOR`]; a file without such a
/// line is a single document. Blank lines are *not* boundaries, because prose and plays (e.g.
/// Shakespeare) use them inside a document, and splitting there would put a BOS every few lines.
/// Each document is trimmed of surrounding whitespace and preceded by BOS. A tokenizer
/// without BOS gets EOS after each document instead (Qwen's convention); one with neither
/// concatenates documents unmarked. See [`tokenize_text`] for how long documents are split
/// so that memory stays bounded while the tokens stay those of the whole document.
///
/// Loading costs what the tokenizer costs: about 2 s per MB of text with the Llama 2
/// tokenizer on one core; [`crate::DataSource`] caches the tokens of a file beside it.
pub struct TextDataset {
    tokens: Tokens,
    documents: usize,
}

impl TextDataset {
    /// Reads and tokenizes `path`. Non-UTF-8 input is an error naming the byte offset.
    pub fn from_file(path: impl AsRef<Path>, tokenizer: &dyn Tokenizer) -> Result<Self> {
        let path = path.as_ref();
        let file = std::fs::File::open(path).map_err(|e| DataError::io(path, e))?;
        let mut ids = Vec::new();
        let documents = tokenize_text(
            path,
            std::io::BufReader::new(file),
            tokenizer,
            CHUNK_BYTES,
            &mut |chunk| {
                ids.extend_from_slice(chunk);
                Ok(())
            },
            &mut |_| {},
        )?;
        Ok(TextDataset {
            tokens: Tokens::new(ids),
            documents,
        })
    }

    /// Tokenizes `text` as [`TextDataset::from_file`] does with a file's contents.
    pub fn from_text(text: &str, tokenizer: &dyn Tokenizer) -> Result<Self> {
        let mut ids = Vec::new();
        let documents = tokenize_documents_of(text, tokenizer, CHUNK_BYTES, &mut ids)?;
        Ok(TextDataset {
            tokens: Tokens::new(ids),
            documents,
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

/// `text` tokenized into `ids` as a file's contents are; returns the number of documents. An
/// empty text has none (only files must hold some).
pub(crate) fn tokenize_documents_of(
    text: &str,
    tokenizer: &dyn Tokenizer,
    chunk_bytes: usize,
    ids: &mut Vec<u32>,
) -> Result<usize> {
    let mut docs = Documents::new(tokenizer, chunk_bytes);
    for line in text.split_inclusive('\n') {
        docs.push_line(line, &mut |c| {
            ids.extend_from_slice(c);
            Ok(())
        })?;
    }
    docs.finish(&mut |c| {
        ids.extend_from_slice(c);
        Ok(())
    })
}

/// Streams the text of `reader` (the file `path`) through `tokenizer`, passing the tokens to
/// `sink` in order and the bytes read so far to `progress`; returns the number of documents.
///
/// Memory stays bounded by `chunk_bytes`: a long document is split after a line that ends a
/// word (`...x\n` followed by a line starting with a non-space), where tokenizers do not merge
/// across the newline, and each later piece is tokenized after a `\n` whose own tokens are then
/// dropped, so that tokenizers which mark the start of a text (SentencePiece's leading `▁`) see
/// the piece as the middle of a text. A tokenizer for which this does not reproduce the
/// tokens of a sample text is given whole documents instead.
pub fn tokenize_text(
    path: &Path,
    mut reader: impl BufRead,
    tokenizer: &dyn Tokenizer,
    chunk_bytes: usize,
    sink: &mut dyn FnMut(&[u32]) -> Result<()>,
    progress: &mut dyn FnMut(u64),
) -> Result<usize> {
    let mut docs = Documents::new(tokenizer, chunk_bytes);
    let mut buf = Vec::new();
    let mut offset = 0usize;
    loop {
        buf.clear();
        let n = reader
            .read_until(b'\n', &mut buf)
            .map_err(|e| DataError::io(path, e))?;
        if n == 0 {
            break;
        }
        let line = std::str::from_utf8(&buf).map_err(|e| DataError::NotUtf8 {
            path: path.to_path_buf(),
            offset: offset + e.valid_up_to(),
        })?;
        if docs.push_line(line, sink)? {
            progress(offset as u64);
        }
        offset += n;
    }
    let documents = docs.finish(sink)?;
    progress(offset as u64);
    if documents == 0 {
        return Err(DataError::Config(format!(
            "{} has no text to train on; pass a non-empty text file",
            path.display()
        )));
    }
    Ok(documents)
}

/// The state of [`tokenize_text`]: the text of the current piece and where the document is.
struct Documents<'t> {
    tokenizer: &'t dyn Tokenizer,
    chunk_bytes: usize,
    pending: String,
    /// Whether the current document has emitted a piece (its BOS) already.
    started: bool,
    documents: usize,
    /// Tokens of `\n` alone, dropped from the front of each later piece; `None` when the
    /// tokenizer fails the splitting probe and gets whole documents.
    context: Option<Vec<u32>>,
}

impl<'t> Documents<'t> {
    fn new(tokenizer: &'t dyn Tokenizer, chunk_bytes: usize) -> Self {
        Documents {
            tokenizer,
            chunk_bytes,
            pending: String::new(),
            started: false,
            documents: 0,
            context: splitting_context(tokenizer),
        }
    }

    /// Adds one line (with its `\n`); returns whether a piece was tokenized.
    fn push_line(
        &mut self,
        line: &str,
        sink: &mut dyn FnMut(&[u32]) -> Result<()>,
    ) -> Result<bool> {
        if line.trim() == DOCUMENT_SEPARATOR {
            self.end_document(sink)?;
            return Ok(true);
        }
        let split = self.context.is_some()
            && self.pending.len() >= self.chunk_bytes
            && can_split(&self.pending, line)
            && !self.pending.trim().is_empty();
        if split {
            self.emit(false, sink)?;
        }
        self.pending.push_str(line);
        Ok(split)
    }

    fn end_document(&mut self, sink: &mut dyn FnMut(&[u32]) -> Result<()>) -> Result<()> {
        self.emit(true, sink)?;
        if self.started && self.tokenizer.bos().is_none() {
            sink(&self.tokenizer.eos().into_iter().collect::<Vec<_>>())?;
        }
        self.started = false;
        Ok(())
    }

    /// Tokenizes the pending text (the document's last piece when `last`) into `sink`.
    fn emit(&mut self, last: bool, sink: &mut dyn FnMut(&[u32]) -> Result<()>) -> Result<()> {
        let text = if self.started {
            self.pending.as_str()
        } else {
            self.pending.trim_start()
        };
        let text = if last { text.trim_end() } else { text };
        if text.is_empty() {
            self.pending.clear();
            return Ok(());
        }
        let ids = if self.started {
            let context = self.context.as_deref().unwrap_or_default();
            let ids = self.tokenizer.encode(&format!("\n{text}"))?;
            match ids.strip_prefix(context) {
                Some(rest) => rest.to_vec(),
                None => self.tokenizer.encode(text)?,
            }
        } else {
            self.documents += 1;
            self.started = true;
            sink(&self.tokenizer.bos().into_iter().collect::<Vec<_>>())?;
            self.tokenizer.encode(text)?
        };
        sink(&ids)?;
        self.pending.clear();
        Ok(())
    }

    fn finish(mut self, sink: &mut dyn FnMut(&[u32]) -> Result<()>) -> Result<usize> {
        self.end_document(sink)?;
        Ok(self.documents)
    }
}

/// Whether a piece may end after `pending` with `next` starting the next one: `pending` ends
/// with a single `\n` after a non-space, and `next` starts with a non-space.
fn can_split(pending: &str, next: &str) -> bool {
    let mut tail = pending.chars().rev();
    tail.next() == Some('\n')
        && tail.next().is_some_and(|c| !c.is_whitespace())
        && next.chars().next().is_some_and(|c| !c.is_whitespace())
}

/// The tokens of `\n` if splitting a text after a newline reproduces the tokens of the whole
/// text for `tokenizer` on a probe, else `None`.
fn splitting_context(tokenizer: &dyn Tokenizer) -> Option<Vec<u32>> {
    const HEAD: &str = "Enter the King.\n";
    const TAIL: &str = "KING. Now, my lords, what news?\nThe 3rd of May: 'tis done.";
    let whole = tokenizer.encode(&format!("{HEAD}{TAIL}")).ok()?;
    let context = tokenizer.encode("\n").ok()?;
    let mut split = tokenizer.encode(HEAD).ok()?;
    split.extend_from_slice(
        tokenizer
            .encode(&format!("\n{TAIL}"))
            .ok()?
            .strip_prefix(context.as_slice())?,
    );
    (split == whole).then_some(context)
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

    /// A tokenizer with a leading-`▁` convention like SentencePiece's, standing in for one
    /// that marks the start of a text: each text's first word gets id 300.
    struct MarksStart;

    impl Tokenizer for MarksStart {
        fn encode(&self, text: &str) -> Result<Vec<u32>> {
            let mut ids = vec![300];
            ids.extend(text.bytes().map(u32::from));
            Ok(ids)
        }
        fn decode(&self, _: &[u32]) -> Result<String> {
            Ok(String::new())
        }
        fn vocab_size(&self) -> usize {
            301
        }
        fn bos(&self) -> Option<u32> {
            Some(256)
        }
        fn eos(&self) -> Option<u32> {
            None
        }
    }

    #[test]
    fn pieces_of_a_long_document_tokenize_as_the_whole() {
        let text = "First line.\nSecond line\n  indented\nThird.\n\nFourth.\nFifth.\n".repeat(50);
        for tokenizer in [&ByteTokenizer as &dyn Tokenizer, &MarksStart] {
            let mut whole = vec![BOS];
            whole.extend(tokenizer.encode(text.trim()).unwrap());
            for chunk in [1, 7, 64, CHUNK_BYTES] {
                let mut ids = Vec::new();
                tokenize_documents_of(&text, tokenizer, chunk, &mut ids).unwrap();
                assert_eq!(ids, whole, "chunk {chunk}");
            }
        }
    }

    #[test]
    fn shared_llama2_pieces_of_shakespeare_tokenize_as_the_whole() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/data");
        let (tok, txt) = (
            format!("{dir}/llama2-tokenizer.json"),
            format!("{dir}/shakespeare_val.txt"),
        );
        if !Path::new(&tok).is_file() || !Path::new(&txt).is_file() {
            eprintln!("skipped: {dir} has no Llama 2 tokenizer or Shakespeare text");
            return;
        }
        let tokenizer = crate::HfTokenizer::from_file(&tok).unwrap();
        let text = std::fs::read_to_string(&txt).unwrap();
        let mut whole = vec![1];
        whole.extend(tokenizer.encode(text.trim()).unwrap());
        let mut ids = Vec::new();
        let reader = std::io::BufReader::new(std::fs::File::open(&txt).unwrap());
        let mut reports = 0;
        tokenize_text(
            Path::new(&txt),
            reader,
            &tokenizer,
            4096,
            &mut |c| {
                ids.extend_from_slice(c);
                Ok(())
            },
            &mut |_| reports += 1,
        )
        .unwrap();
        assert!(reports > 10, "{reports} progress reports");
        assert_eq!(ids.len(), whole.len());
        assert_eq!(ids, whole);
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
