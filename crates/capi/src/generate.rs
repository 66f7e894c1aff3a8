//! Generation: tokens (or text through the model's tokenizer) in, one callback per generated
//! token with the text it completes, and the callback's return value able to stop it.

use crate::model::Model;
use crate::status::{
    anetrain_status, guard, handle, put, slice, slice_mut, text, Failure, Outcome,
    ANETRAIN_ERR_INVALID_ARGUMENT,
};
use anetrain_model::device_choice::DeviceChoice;
use anetrain_model::generate::{complete, GenerationStats, Output, Prompt, SamplingOptions};
use anetrain_model::reference;
use std::ffi::{c_char, c_int, c_void, CString};

/// The token of the last callback of a generation, which carries text held back at the end
/// (a character whose bytes were not all generated); its return value is ignored.
pub const ANETRAIN_NO_TOKEN: u32 = u32::MAX;

/// How tokens are drawn; `anetrain_generate_options_default` gives greedy decoding.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct GenerateOptions {
    /// Softmax temperature; 0 is greedy (always the most likely token).
    pub temperature: f32,
    /// Keep only the `top_k` most likely tokens; 0 keeps all.
    pub top_k: usize,
    /// Keep the most likely tokens whose probability mass reaches `top_p`; 1 keeps all.
    pub top_p: f32,
    /// Seed of the sampler: one seed, one text.
    pub seed: u64,
}

impl From<GenerateOptions> for SamplingOptions {
    fn from(o: GenerateOptions) -> SamplingOptions {
        SamplingOptions {
            temperature: o.temperature,
            top_k: o.top_k,
            top_p: o.top_p,
            seed: o.seed,
        }
    }
}

/// Called once per generated token, on the thread that called generate: `token` is its id,
/// `piece` the text it completes (NUL-terminated UTF-8, "" while a multi-byte character is
/// unfinished, NULL when the model has no tokenizer), `user` the caller's pointer. Return 0 to
/// go on, anything else to stop after this token. The piece is valid only during the call.
#[allow(non_camel_case_types)]
pub type anetrain_token_callback =
    Option<unsafe extern "C" fn(token: u32, piece: *const c_char, user: *mut c_void) -> c_int>;

/// What a generation did: `anetrain_model_generate*` fill it when given a non-NULL pointer.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct GenerationReport {
    /// Tokens in the prompt (with the BOS the text variant adds).
    pub prompt_tokens: usize,
    /// Tokens generated and handed to the callback (an EOS that ends generation is not one).
    pub generated_tokens: usize,
    /// Wall time of the prefill, in milliseconds.
    pub prefill_ms: f64,
    /// Generated tokens per second after the prefill; 0 when none.
    pub decode_tokens_per_s: f64,
}

impl From<GenerationStats> for GenerationReport {
    fn from(s: GenerationStats) -> GenerationReport {
        GenerationReport {
            prompt_tokens: s.prompt_tokens,
            generated_tokens: s.generated_tokens,
            prefill_ms: s.prefill_ms,
            decode_tokens_per_s: s.decode_tokens_per_s,
        }
    }
}

/// Stores in `*out` the default options: greedy, no top-k or top-p filtering, seed 0.
///
/// # Safety
/// `out` is writable.
#[no_mangle]
pub unsafe extern "C" fn anetrain_generate_options_default(
    out: *mut GenerateOptions,
) -> anetrain_status {
    let d = SamplingOptions::default();
    guard(|| {
        put(
            out,
            GenerateOptions {
                temperature: d.temperature,
                top_k: d.top_k,
                top_p: d.top_p,
                seed: d.seed,
            },
            "out",
        )
    })
}

/// Generates up to `max_new_tokens` tokens after the `prompt_len` token ids at `prompt` on
/// `device` (`auto`, `cpu`, `cpu-f16`, `ane`; `reference` runs the kernels on the fp32 CPU),
/// calling `callback` for each. Stops at the model's EOS, when the callback returns non-zero,
/// or at the model's `max_seq_len`. `options` NULL means greedy. `report` may be NULL.
///
/// # Safety
/// `m` is a live model; `device` is NUL-terminated; `prompt` holds `prompt_len` ids;
/// `options` is NULL or readable; `report` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn anetrain_model_generate(
    m: *mut Model,
    device: *const c_char,
    prompt: *const u32,
    prompt_len: usize,
    max_new_tokens: usize,
    options: *const GenerateOptions,
    callback: anetrain_token_callback,
    user: *mut c_void,
    report: *mut GenerationReport,
) -> anetrain_status {
    guard(|| {
        let m = handle(m, "m")?;
        let prompt = Prompt::Ids(slice(prompt, prompt_len, "prompt")?.to_vec());
        run(
            m,
            device,
            prompt,
            max_new_tokens,
            options,
            callback,
            user,
            report,
        )
    })
}

/// As `anetrain_model_generate`, with the prompt given as text: the model's tokenizer encodes
/// it after its BOS. An error when the model carries no tokenizer.
///
/// # Safety
/// As for `anetrain_model_generate`; `prompt` is NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn anetrain_model_generate_text(
    m: *mut Model,
    device: *const c_char,
    prompt: *const c_char,
    max_new_tokens: usize,
    options: *const GenerateOptions,
    callback: anetrain_token_callback,
    user: *mut c_void,
    report: *mut GenerationReport,
) -> anetrain_status {
    guard(|| {
        let m = handle(m, "m")?;
        let prompt = Prompt::Text(text(prompt, "prompt")?.to_string());
        run(
            m,
            device,
            prompt,
            max_new_tokens,
            options,
            callback,
            user,
            report,
        )
    })
}

/// The body both generate calls share.
#[allow(clippy::too_many_arguments)]
unsafe fn run(
    m: &Model,
    device: *const c_char,
    prompt: Prompt,
    max_new_tokens: usize,
    options: *const GenerateOptions,
    callback: anetrain_token_callback,
    user: *mut c_void,
    report: *mut GenerationReport,
) -> Outcome {
    let choice: DeviceChoice = text(device, "device")?.parse()?;
    let options: SamplingOptions = options
        .as_ref()
        .copied()
        .map_or_else(Default::default, Into::into);
    let Some(callback) = callback else {
        return Err(Failure::new(
            ANETRAIN_ERR_INVALID_ARGUMENT,
            "`callback` is NULL; pass a function that receives each token",
        ));
    };
    let on_output = |output: Output<'_>| match output {
        Output::Text(piece) => {
            // C strings end at NUL; a generated NUL byte becomes U+FFFD rather than a cut.
            let text = CString::new(piece.text.replace('\0', "\u{FFFD}")).unwrap_or_default();
            let token = piece.token.unwrap_or(ANETRAIN_NO_TOKEN);
            callback(token, text.as_ptr(), user) == 0
        }
        Output::Token(token) => callback(token, std::ptr::null(), user) == 0,
    };
    let stats = complete(
        m.loaded.clone(),
        choice,
        prompt,
        max_new_tokens,
        options,
        on_output,
    )?;
    if !report.is_null() {
        put(report, stats.into(), "report")?;
    }
    Ok(())
}

/// Writes into `logits` (`len` floats, the model's vocabulary size) the plain-Rust reference
/// model's next-token logits after the `tokens_len` ids at `tokens`: the oracle the kernels
/// are tested against, computed without a KV cache.
///
/// # Safety
/// `m` is a live model; `tokens` holds `tokens_len` ids; `logits` has room for `len` floats.
#[no_mangle]
pub unsafe extern "C" fn anetrain_model_logits(
    m: *mut Model,
    tokens: *const u32,
    tokens_len: usize,
    logits: *mut f32,
    len: usize,
) -> anetrain_status {
    guard(|| {
        let model = &handle(m, "m")?.loaded;
        let tokens = slice(tokens, tokens_len, "tokens")?;
        let vocab = model.config.vocab_size;
        if tokens.is_empty() || len != vocab {
            return Err(Failure::new(
                crate::status::ANETRAIN_ERR_SIZE,
                format!(
                    "{tokens_len} tokens and room for {len} logits: pass at least one token and \
                     room for the vocabulary's {vocab}"
                ),
            ));
        }
        let out = slice_mut(logits, len, "logits")?;
        let all = reference::forward(&model.config, &model.params, &[tokens.to_vec()])?;
        out.copy_from_slice(all.at(0, tokens.len() - 1));
        Ok(())
    })
}
