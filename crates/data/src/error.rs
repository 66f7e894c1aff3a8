//! The crate's one error type.
//!
//! Every variant is built where the cause is known, so its message names the file, token
//! position or setting at fault and says what to change.

use std::path::PathBuf;

/// Everything that can go wrong while tokenizing, loading or batching data.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// A file or directory could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file or directory that failed.
        path: PathBuf,
        /// The operating system's reason.
        source: std::io::Error,
    },

    /// A `tokenizer.json` could not be loaded or used.
    #[error("tokenizer {path}: {message}")]
    Tokenizer {
        /// The tokenizer file (or `byte` for the built-in tokenizer).
        path: String,
        /// What went wrong and what to do about it.
        message: String,
    },

    /// A text file is not valid UTF-8.
    #[error(
        "{path} is not valid UTF-8 at byte offset {offset}; re-encode the file as UTF-8 \
         (e.g. `iconv -t UTF-8`)"
    )]
    NotUtf8 {
        /// The text file.
        path: PathBuf,
        /// Byte offset of the first invalid sequence.
        offset: usize,
    },

    /// A token shard is malformed (odd byte length, empty, ...).
    #[error("shard {path}: {message}")]
    Shard {
        /// The shard file or directory.
        path: PathBuf,
        /// What is wrong and how to fix it.
        message: String,
    },

    /// A token id does not fit the model's vocabulary.
    #[error(
        "token id {id} at {position} is outside the vocabulary of {vocab_size} tokens: the data \
         was tokenized with a larger vocabulary than the model's {vocab_size}; pass the matching \
         --tokenizer/--model"
    )]
    TokenOutOfVocab {
        /// The offending id.
        id: u32,
        /// Where it is, e.g. `token 1234 (shard data00.bin, token 1234)`.
        position: String,
        /// The model's vocabulary size.
        vocab_size: usize,
    },

    /// A token id passed to `decode` is not in the tokenizer's vocabulary.
    #[error(
        "cannot decode token id {id}: the tokenizer has only {vocab_size} tokens; the ids come \
         from a model with a different vocabulary, pass the matching --tokenizer"
    )]
    UnknownTokenId {
        /// The offending id.
        id: u32,
        /// The tokenizer's vocabulary size.
        vocab_size: usize,
    },

    /// A read asked for tokens past the end of a token stream.
    #[error("tokens {start}..{end} requested from a stream of {len} tokens")]
    OutOfRange {
        /// First token requested.
        start: usize,
        /// One past the last token requested.
        end: usize,
        /// Length of the stream.
        len: usize,
    },

    /// A line of a JSON Lines file of fine-tuning examples is malformed.
    #[error("{}{} {message}", path.display(), at_line(*line))]
    Jsonl {
        /// The `.jsonl` file.
        path: PathBuf,
        /// 1-based line number (0 for the file as a whole).
        line: usize,
        /// Which field is wrong and how to write it.
        message: String,
    },

    /// A chat template could not be loaded or rendered.
    #[error("chat template{origin}: {message}")]
    Template {
        /// ` in <file>` when it came from a file, else empty.
        origin: String,
        /// The template engine's message and what to do.
        message: String,
    },

    /// Sizes, fractions or a restored sampler state that cannot work with the data.
    #[error("{0}")]
    Config(String),
}

/// Shorthand for results carrying [`DataError`].
pub type Result<T> = std::result::Result<T, DataError>;

impl DataError {
    /// Wraps an I/O error with the path it concerns.
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        DataError::Io {
            path: path.into(),
            source,
        }
    }
}

/// ` line N`, or nothing for line 0 (the file as a whole).
fn at_line(line: usize) -> String {
    if line == 0 {
        String::new()
    } else {
        format!(" line {line}")
    }
}
