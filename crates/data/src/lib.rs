//! Tokenizers, datasets and deterministic batching for anetrain.
//!
//! - [`Tokenizer`]: [`HfTokenizer`] over a Hugging Face `tokenizer.json`, and [`ByteTokenizer`]
//!   that needs no file; [`StreamDecoder`] turns generated ids into text one token at a time.
//! - [`TokenStream`]: a flat sequence of ids with a BOS before each document (the llama2.c
//!   layout), from memory-mapped uint16 shards ([`ShardSet`]), a text file tokenized on load
//!   ([`TextDataset`]) or the built-in [`SyntheticStories`]; [`validate_vocab`] checks it
//!   against a model.
//! - [`Sampler`]: reproducible `[batch][seq + 1]` batches, sequential or seeded shuffle, whose
//!   [`SamplerState`] goes into checkpoints; [`Split`] and [`EvalBatches`] for validation.
//! - [`load_tokenizer`] and [`DataSource`] read the `--tokenizer` and `--data` spellings.
//! - Fine-tuning: [`ExampleSplits`] / [`ExampleFile`] read mlx-lm style JSON Lines,
//!   [`ChatTemplate`] renders a model's Jinja chat template, [`ExampleEncoder`] turns examples
//!   into [`MaskedTokens`] (ids plus which count in the loss), and [`ExampleSampler`] /
//!   [`ExampleEvalBatches`] pad them into [`Batch`]es with per-target weights.
//! - [`TrainData`]: a run's data, streams or examples ([`ExampleSplit`]), behind one
//!   [`BatchSampler`] and one [`EvalSource`].
//! - Chatting: [`Conversation`] keeps a chat's history and renders the next [`ChatPrompt`].

#![warn(missing_docs)]

mod chat;
mod conversation;
mod error;
mod example_batches;
mod finetune;
mod hf;
mod jsonl;
pub mod rng;
mod run_data;
mod sampler;
mod shards;
mod source;
mod split;
mod stream;
mod stream_decoder;
mod synthetic;
mod text;
mod text_cache;
mod tokenizer;
mod train_data;

pub use chat::{ChatTemplate, PLAIN_TEMPLATE};
pub use conversation::{ChatPrompt, Conversation};
pub use error::{DataError, Result};
pub use example_batches::{ExampleEvalBatches, ExampleSampler};
pub use finetune::{EncodeSummary, ExampleEncoder, MaskedTokens};
pub use hf::HfTokenizer;
pub use jsonl::{Example, ExampleFile, ExampleKind, ExampleSplits};
pub use run_data::{DataRequest, OpenedData};
pub use sampler::{num_samples, Batch, EvalBatches, Sampler, SamplerState, Sampling};
pub use shards::ShardSet;
pub use source::{
    load_tokenizer, DataSource, TokenizerSource, CHAT_TEMPLATE_FILE, DEFAULT_SYNTHETIC_TOKENS,
    TOKENIZER_CONFIG_FILE, TOKENIZER_FILE,
};
pub use split::{Split, DEFAULT_VAL_FRACTION};
pub use stream::{validate_vocab, TokenStream, Tokens, Window};
pub use stream_decoder::StreamDecoder;
pub use synthetic::SyntheticStories;
pub use text::{tokenize_text, TextDataset, DOCUMENT_SEPARATOR};
pub use text_cache::{open_text, TextOptions};
pub use tokenizer::{ByteTokenizer, Tokenizer};
pub use train_data::{BatchSampler, EvalSource, ExampleSplit, TrainData};
