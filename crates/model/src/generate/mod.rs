//! Text generation with a KV cache: decode kernels in MIL (so they run on the ANE and, through
//! the interpreter, on any CPU), a chunked prefill through the same kernels, and sampling.
//!
//! - [`chat`]: [`Chat`], a conversation through the model's chat template, and the
//!   [`stop_tokens`] generation ends at;
//! - [`kernels`]: the MIL decode kernels and the [`DecodePlan`] of widths and cache buckets
//!   a device gets;
//! - [`layer_kernels`]: every layer's compiled kernels, staged weights and KV cache;
//! - [`positions`]: RoPE at a position offset and the per-chunk cache mask;
//! - [`generator`]: [`Generator`], which stages weights, holds the cache and runs chunks;
//! - [`sampler`]: greedy, temperature, top-k and top-p sampling with a seeded generator;
//! - [`text`]: text prompts, requests checked before compiling, completions streamed as text.

pub mod chat;
pub mod generator;
pub mod kernels;
mod layer_kernels;
pub mod positions;
pub mod sampler;
pub mod text;

pub use chat::{
    stop_tokens, Chat, ChatEvent, ChatOptions, ChatReply, DEFAULT_CONTEXT as DEFAULT_CHAT_CONTEXT,
};
pub use generator::{GenerationStats, Generator};
pub use kernels::{plan_kernels, DecodeKernels, DecodePlan, PrefillWidths};
pub use sampler::{argmax, Sampler, SamplingOptions};
pub use text::{complete, encode_prompt, generate_text, generator_for, Output, Piece, Prompt};
