//! The model API: load any model path the CLI accepts and evaluate the loss of token rows.

use crate::status::{
    anetrain_status, free_handle, guard, handle, put, put_handle, slice, text, Failure, Outcome,
    ANETRAIN_ERR_INVALID_ARGUMENT,
};
use anetrain_model::device_choice::DeviceChoice;
use anetrain_model::source::{LoadedModel, ModelSource};
use std::ffi::{c_char, CString};

/// A loaded model: config, weights and the tokenizer it carries. Thread-safety: use a model
/// from one thread at a time; it may be moved to another thread between calls.
pub struct Model {
    pub(crate) loaded: LoadedModel,
    config_json: CString,
}

/// Loads the model at `path`: a run directory (its latest checkpoint), a checkpoint, a Hugging
/// Face directory, a llama2.c `.bin`, or a preset name (random weights, seed 0).
///
/// # Safety
/// `path` is NUL-terminated; `out` is writable.
#[no_mangle]
pub unsafe extern "C" fn anetrain_model_load(
    path: *const c_char,
    out: *mut *mut Model,
) -> anetrain_status {
    guard(|| {
        let loaded = ModelSource::parse(text(path, "path")?)?.load(0)?;
        let config_json = CString::new(loaded.config.to_hf_json()).unwrap_or_default();
        put_handle(
            out,
            Model {
                loaded,
                config_json,
            },
            "out",
        )
    })
}

/// Stores in `*out` the model's configuration as Hugging Face `config.json` text; the string
/// lives as long as the model.
///
/// # Safety
/// `m` is a live model; `out` is writable.
#[no_mangle]
pub unsafe extern "C" fn anetrain_model_config_json(
    m: *mut Model,
    out: *mut *const c_char,
) -> anetrain_status {
    guard(|| put(out, handle(m, "m")?.config_json.as_ptr(), "out"))
}

/// Stores in `*loss_out` the mean cross-entropy of the model over `rows` rows of `cols` tokens
/// at `tokens` (row-major): each row's inputs are `row[:-1]` and its targets `row[1:]`, and the
/// mean is over all `rows * (cols - 1)` targets. `device` is `auto`, `cpu`, `cpu-f16`, `ane`
/// or `reference` (the plain-Rust model).
///
/// # Safety
/// `m` is a live model; `device` is NUL-terminated; `tokens` holds `rows * cols` values;
/// `loss_out` is writable.
#[no_mangle]
pub unsafe extern "C" fn anetrain_model_eval(
    m: *mut Model,
    device: *const c_char,
    tokens: *const u32,
    rows: usize,
    cols: usize,
    loss_out: *mut f32,
) -> anetrain_status {
    guard(|| {
        let m = handle(m, "m")?;
        let choice: DeviceChoice = text(device, "device")?.parse()?;
        let rows = token_rows(tokens, rows, cols)?;
        let model = &m.loaded;
        let (mut engine, _) = choice.engine(&model.config, cols - 1, &model.params)?;
        let batch = anetrain_data::Batch::from_rows(&rows, None)
            .map_err(anetrain_model::error::ModelError::from)?;
        let stats = engine.loss(&model.params, &batch)?;
        put(loss_out, stats.loss, "loss_out")
    })
}

/// `rows` rows of `cols` tokens, each at least an input and a target.
unsafe fn token_rows(tokens: *const u32, rows: usize, cols: usize) -> Outcome<Vec<Vec<u32>>> {
    if rows == 0 || cols < 2 {
        return Err(Failure::new(
            ANETRAIN_ERR_INVALID_ARGUMENT,
            format!(
                "{rows} rows of {cols} tokens: pass at least one row of at least 2 tokens \
                 (inputs row[:-1], targets row[1:])"
            ),
        ));
    }
    let len = rows.checked_mul(cols).ok_or_else(|| {
        Failure::new(
            ANETRAIN_ERR_INVALID_ARGUMENT,
            "rows * cols overflows size_t",
        )
    })?;
    Ok(slice(tokens, len, "tokens")?
        .chunks(cols)
        .map(<[u32]>::to_vec)
        .collect())
}

/// Releases a model (NULL is ignored).
///
/// # Safety
/// `m` is NULL or a model not yet freed.
#[no_mangle]
pub unsafe extern "C" fn anetrain_model_free(m: *mut Model) {
    let _ = guard(|| {
        free_handle(m);
        Ok(())
    });
}
