//! Status codes, the thread-local last error, and the guard every entry point runs its body in,
//! so no panic and no Rust error crosses the C boundary unreported.

use anetrain_device::ane::budget::{CompileBudget, HARD_LIMIT};
use anetrain_device::DeviceError;
use anetrain_model::error::ModelError;
use std::cell::RefCell;
use std::ffi::{c_char, c_int, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};

/// The result of every call: `ANETRAIN_OK` (0) or one of the `ANETRAIN_ERR_*` codes.
#[allow(non_camel_case_types)]
pub type anetrain_status = c_int;

/// Success.
pub const ANETRAIN_OK: anetrain_status = 0;
/// A NULL pointer, a string that is not UTF-8, or an option value out of range.
pub const ANETRAIN_ERR_INVALID_ARGUMENT: anetrain_status = 1;
/// A file or directory that is missing or cannot be read or written.
pub const ANETRAIN_ERR_IO: anetrain_status = 2;
/// MIL text that does not parse or type-check, or weights that do not match it.
pub const ANETRAIN_ERR_MIL: anetrain_status = 3;
/// A buffer whose length is not the element count of the tensor it is for.
pub const ANETRAIN_ERR_SIZE: anetrain_status = 4;
/// No kernel input or output has the given name.
pub const ANETRAIN_ERR_NOT_FOUND: anetrain_status = 5;
/// The device cannot be used here (no ANE, wrong platform, framework missing).
pub const ANETRAIN_ERR_UNAVAILABLE: anetrain_status = 6;
/// The device failed to compile or run a kernel.
pub const ANETRAIN_ERR_DEVICE: anetrain_status = 7;
/// A model, tokenizer, dataset or training problem (bad config, tokens out of range, ...).
pub const ANETRAIN_ERR_MODEL: anetrain_status = 8;
/// This process has used up its ANE compile budget: save, start a new process, resume there.
pub const ANETRAIN_ERR_COMPILE_BUDGET: anetrain_status = 9;
/// A bug in anetrain (a Rust panic was caught); the message says where.
pub const ANETRAIN_ERR_INTERNAL: anetrain_status = 99;

/// An error on its way to the caller: a status and the message `anetrain_last_error` returns.
#[derive(Debug)]
pub struct Failure {
    pub status: anetrain_status,
    pub message: String,
}

impl Failure {
    /// A failure with `status` and `message`.
    pub fn new(status: anetrain_status, message: impl Into<String>) -> Failure {
        Failure {
            status,
            message: message.into(),
        }
    }
}

impl Failure {
    /// The status a device error stands for.
    fn from_device(e: &DeviceError) -> anetrain_status {
        match e {
            DeviceError::Mil(_) => ANETRAIN_ERR_MIL,
            DeviceError::Layout(_) | DeviceError::OutOfMemory(_) => ANETRAIN_ERR_SIZE,
            DeviceError::UnknownPort(_) => ANETRAIN_ERR_NOT_FOUND,
            DeviceError::Unavailable(_) => ANETRAIN_ERR_UNAVAILABLE,
            DeviceError::Runtime(_) if CompileBudget::process().used() >= HARD_LIMIT => {
                ANETRAIN_ERR_COMPILE_BUDGET
            }
            DeviceError::Unsupported { .. } | DeviceError::Runtime(_) => ANETRAIN_ERR_DEVICE,
        }
    }
}

impl From<DeviceError> for Failure {
    fn from(e: DeviceError) -> Failure {
        Failure::new(Failure::from_device(&e), e.to_string())
    }
}

impl From<ModelError> for Failure {
    fn from(e: ModelError) -> Failure {
        let status = match &e {
            ModelError::Io { .. } => ANETRAIN_ERR_IO,
            ModelError::Input(_) => ANETRAIN_ERR_INVALID_ARGUMENT,
            ModelError::Mil(_) => ANETRAIN_ERR_MIL,
            ModelError::DeviceUnavailable { .. } => ANETRAIN_ERR_UNAVAILABLE,
            ModelError::Device { source, .. } => match Failure::from_device(source) {
                ANETRAIN_ERR_COMPILE_BUDGET => ANETRAIN_ERR_COMPILE_BUDGET,
                _ => ANETRAIN_ERR_DEVICE,
            },
            ModelError::Internal(_) => ANETRAIN_ERR_INTERNAL,
            _ => ANETRAIN_ERR_MODEL,
        };
        Failure::new(status, e.to_string())
    }
}

/// What entry points return inside the guard.
pub type Outcome<T = ()> = Result<T, Failure>;

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

fn set_last_error(message: &str) {
    // A message cannot carry an interior NUL to C; replace it rather than lose the message.
    let text = CString::new(message.replace('\0', "\u{FFFD}")).unwrap_or_default();
    LAST_ERROR.with(|cell| *cell.borrow_mut() = text);
}

/// Runs `body`, turning its error or panic into a status and the thread's last error.
pub fn guard(body: impl FnOnce() -> Outcome) -> anetrain_status {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => ANETRAIN_OK,
        Ok(Err(failure)) => {
            set_last_error(&failure.message);
            failure.status
        }
        Err(payload) => {
            let what = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            set_last_error(&format!(
                "internal error in anetrain (please report it): {what}"
            ));
            ANETRAIN_ERR_INTERNAL
        }
    }
}

/// The message of the last failed call on this thread ("" when none has failed). The pointer
/// stays valid until the next failing call on the same thread.
#[no_mangle]
pub extern "C" fn anetrain_last_error() -> *const c_char {
    LAST_ERROR.with(|cell| cell.borrow().as_ptr())
}

/// The library version, e.g. "0.1.0" (a static string).
#[no_mangle]
pub extern "C" fn anetrain_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}

/// The UTF-8 string at `ptr`, or an argument error naming `what`.
///
/// # Safety
/// `ptr` is NULL or points at a NUL-terminated string that outlives the call.
pub unsafe fn text<'a>(ptr: *const c_char, what: &str) -> Outcome<&'a str> {
    if ptr.is_null() {
        return Err(Failure::new(
            ANETRAIN_ERR_INVALID_ARGUMENT,
            format!("`{what}` is NULL; pass a NUL-terminated UTF-8 string"),
        ));
    }
    CStr::from_ptr(ptr).to_str().map_err(|_| {
        Failure::new(
            ANETRAIN_ERR_INVALID_ARGUMENT,
            format!("`{what}` is not valid UTF-8"),
        )
    })
}

/// Like [`text`], but NULL means "not given".
///
/// # Safety
/// As for [`text`].
pub unsafe fn optional_text<'a>(ptr: *const c_char, what: &str) -> Outcome<Option<&'a str>> {
    if ptr.is_null() {
        Ok(None)
    } else {
        text(ptr, what).map(Some)
    }
}

/// The `len` elements at `ptr` (NULL is allowed only when `len` is 0).
///
/// # Safety
/// `ptr` is NULL or points at `len` initialised elements that outlive the call.
pub unsafe fn slice<'a, T>(ptr: *const T, len: usize, what: &str) -> Outcome<&'a [T]> {
    if len == 0 {
        return Ok(&[]);
    }
    if ptr.is_null() {
        return Err(null_argument(what));
    }
    Ok(std::slice::from_raw_parts(ptr, len))
}

/// The writable `len` elements at `ptr` (NULL is allowed only when `len` is 0).
///
/// # Safety
/// `ptr` is NULL or points at `len` writable elements that outlive the call.
pub unsafe fn slice_mut<'a, T>(ptr: *mut T, len: usize, what: &str) -> Outcome<&'a mut [T]> {
    if len == 0 {
        return Ok(&mut []);
    }
    if ptr.is_null() {
        return Err(null_argument(what));
    }
    Ok(std::slice::from_raw_parts_mut(ptr, len))
}

/// The object a handle points at, or an argument error naming `what`.
///
/// # Safety
/// `ptr` is NULL or a live handle of type `T` not used elsewhere during the call.
pub unsafe fn handle<'a, T>(ptr: *mut T, what: &str) -> Outcome<&'a mut T> {
    ptr.as_mut().ok_or_else(|| null_argument(what))
}

/// Stores `value` through the output pointer `out`.
///
/// # Safety
/// `out` is NULL or writable.
pub unsafe fn put<T>(out: *mut T, value: T, what: &str) -> Outcome {
    if out.is_null() {
        return Err(null_argument(what));
    }
    out.write(value);
    Ok(())
}

/// Moves `value` to the heap and stores the handle through `out`.
///
/// # Safety
/// `out` is NULL or writable.
pub unsafe fn put_handle<T>(out: *mut *mut T, value: T, what: &str) -> Outcome {
    if out.is_null() {
        return Err(null_argument(what));
    }
    out.write(Box::into_raw(Box::new(value)));
    Ok(())
}

/// Releases a handle made by [`put_handle`]; NULL is ignored.
///
/// # Safety
/// `ptr` is NULL or a handle of type `T` not yet freed.
pub unsafe fn free_handle<T>(ptr: *mut T) {
    if !ptr.is_null() {
        drop(Box::from_raw(ptr));
    }
}

fn null_argument(what: &str) -> Failure {
    Failure::new(ANETRAIN_ERR_INVALID_ARGUMENT, format!("`{what}` is NULL"))
}
