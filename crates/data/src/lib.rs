//! Tokenizers, datasets and deterministic batching. Filled in by the training work (issue 3).
