//! The kernel API, everything a MIL bridge needs: open a device, compile MIL text with its
//! weights, describe the inputs and outputs, write inputs, run, read outputs, free.

use crate::status::{
    anetrain_status, free_handle, guard, handle, optional_text, put, put_handle, slice, slice_mut,
    text, Failure, Outcome, ANETRAIN_ERR_INVALID_ARGUMENT, ANETRAIN_ERR_IO, ANETRAIN_ERR_MIL,
    ANETRAIN_ERR_NOT_FOUND, ANETRAIN_ERR_SIZE,
};
use anetrain_device::TensorSpec;
use anetrain_mil::{parse_program, DType, WeightFiles};
use anetrain_model::device_choice::DeviceChoice;
use half::f16;
use std::ffi::{c_char, c_int, c_void, CString};
use std::path::Path;

/// A device that compiles and runs MIL kernels. Thread-safety: use a device from one thread at
/// a time; kernels compiled on it are independent of it and may outlive it.
pub struct Device {
    inner: Box<dyn anetrain_device::Device>,
    name: CString,
}

/// A compiled MIL program with its own input and output buffers; inputs keep their values
/// between runs. Thread-safety: use a kernel from one thread at a time; it may be moved to
/// another thread between calls.
pub struct Kernel {
    inner: Box<dyn anetrain_device::Kernel>,
    input_names: Vec<CString>,
    output_names: Vec<CString>,
}

/// The most axes a tensor described by `anetrain_tensor_info` can have.
pub const ANETRAIN_MAX_RANK: usize = 8;

/// Element type code of a kernel input or output (`anetrain_tensor_info.dtype`).
#[allow(non_camel_case_types)]
pub type anetrain_dtype = c_int;
/// IEEE half precision; as a buffer's dtype, values given as raw `uint16_t` bits.
pub const ANETRAIN_DTYPE_FP16: anetrain_dtype = 1;
/// IEEE single precision; as a buffer's dtype, `float` values.
pub const ANETRAIN_DTYPE_FP32: anetrain_dtype = 2;
/// Any other MIL element type (int8, int32, bool, ...): values still cross as FP32 or FP16.
pub const ANETRAIN_DTYPE_OTHER: anetrain_dtype = 3;

/// One kernel input or output: its name, element type and shape.
#[repr(C)]
pub struct TensorInfo {
    /// The port name; owned by the kernel, valid until it is freed.
    pub name: *const c_char,
    /// `ANETRAIN_DTYPE_FP16`, `ANETRAIN_DTYPE_FP32` or `ANETRAIN_DTYPE_OTHER`.
    pub dtype: anetrain_dtype,
    /// Number of axes; `shape[rank..]` is zero.
    pub rank: usize,
    /// The axes, row-major (the ANE layout is `[1, C, 1, S]`).
    pub shape: [usize; ANETRAIN_MAX_RANK],
    /// Element count: the `len` the write and read calls expect.
    pub len: usize,
}

/// Opens the device `name`: `cpu` (fp32 MIL interpreter), `cpu-f16` (every op rounded to fp16
/// like the ANE), `ane` (the Apple Neural Engine, after a self-test), `auto` (the ANE when
/// it works here, else `cpu`) or `reference` (kernels on the fp32 CPU interpreter).
///
/// # Safety
/// `name` is a NUL-terminated string; `out` is writable.
#[no_mangle]
pub unsafe extern "C" fn anetrain_device_open(
    name: *const c_char,
    out: *mut *mut Device,
) -> anetrain_status {
    guard(|| {
        let choice: DeviceChoice = text(name, "name")?.parse()?;
        let (inner, _) = choice.device()?;
        let name = CString::new(inner.name()).unwrap_or_default();
        put_handle(out, Device { inner, name }, "out")
    })
}

/// Stores in `*out` the device's description, e.g. `cpu (f32)`; the string lives as long as
/// the device.
///
/// # Safety
/// `dev` is a live device; `out` is writable.
#[no_mangle]
pub unsafe extern "C" fn anetrain_device_name(
    dev: *mut Device,
    out: *mut *const c_char,
) -> anetrain_status {
    guard(|| {
        let dev = handle(dev, "dev")?;
        put(out, dev.name.as_ptr(), "out")
    })
}

/// Releases a device (NULL is ignored); kernels compiled on it stay usable.
///
/// # Safety
/// `dev` is NULL or a device not yet freed.
#[no_mangle]
pub unsafe extern "C" fn anetrain_device_free(dev: *mut Device) {
    let _ = guard(|| {
        free_handle(dev);
        Ok(())
    });
}

/// Compiles the `main` function of `mil_text`. BLOBFILE paths `@model_path/...` are read from
/// the directory `weights_dir` (NULL when the program has no BLOBFILE constants).
///
/// # Safety
/// `dev` is a live device; the strings are NUL-terminated or (for `weights_dir`) NULL; `out`
/// is writable.
#[no_mangle]
pub unsafe extern "C" fn anetrain_kernel_compile(
    dev: *mut Device,
    mil_text: *const c_char,
    weights_dir: *const c_char,
    out: *mut *mut Kernel,
) -> anetrain_status {
    guard(|| {
        let dev = handle(dev, "dev")?;
        let source = text(mil_text, "mil_text")?;
        let program = parse(source)?;
        let weights = match optional_text(weights_dir, "weights_dir")? {
            None => WeightFiles::new(),
            Some(dir) => WeightFiles::load_dir(&program, Path::new(dir))
                .map_err(|e| Failure::new(ANETRAIN_ERR_IO, e.to_string()))?,
        };
        put_handle(out, compile(dev, &program, &weights)?, "out")
    })
}

/// Compiles the `main` function of `mil_text` with its weight files given in memory: `count`
/// files, file i named `blob_paths[i]` exactly as the MIL writes it (`@model_path/w.bin`) with
/// `blob_lens[i]` bytes at `blobs[i]`. The bytes are copied.
///
/// # Safety
/// `dev` is a live device; `mil_text` is NUL-terminated; each array has `count` valid entries;
/// `out` is writable.
#[no_mangle]
pub unsafe extern "C" fn anetrain_kernel_compile_blobs(
    dev: *mut Device,
    mil_text: *const c_char,
    blob_paths: *const *const c_char,
    blobs: *const *const u8,
    blob_lens: *const usize,
    count: usize,
    out: *mut *mut Kernel,
) -> anetrain_status {
    guard(|| {
        let dev = handle(dev, "dev")?;
        let program = parse(text(mil_text, "mil_text")?)?;
        let paths = slice(blob_paths, count, "blob_paths")?;
        let datas = slice(blobs, count, "blobs")?;
        let lens = slice(blob_lens, count, "blob_lens")?;
        let mut weights = WeightFiles::new();
        for i in 0..count {
            let path = text(paths[i], "blob_paths[i]")?;
            let bytes = slice(datas[i], lens[i], "blobs[i]")?;
            weights.insert(path, bytes.to_vec());
        }
        put_handle(out, compile(dev, &program, &weights)?, "out")
    })
}

fn parse(source: &str) -> Outcome<anetrain_mil::Program> {
    parse_program(source).map_err(|e| Failure::new(ANETRAIN_ERR_MIL, format!("MIL text: {e}")))
}

fn compile(
    dev: &Device,
    program: &anetrain_mil::Program,
    weights: &WeightFiles,
) -> Outcome<Kernel> {
    let inner = dev.inner.compile(program, weights)?;
    let names = |specs: &[TensorSpec]| {
        specs
            .iter()
            .map(|s| CString::new(s.name.as_str()).unwrap_or_default())
            .collect()
    };
    Ok(Kernel {
        input_names: names(inner.inputs()),
        output_names: names(inner.outputs()),
        inner,
    })
}

/// Stores the number of inputs in `*out`.
///
/// # Safety
/// `k` is a live kernel; `out` is writable.
#[no_mangle]
pub unsafe extern "C" fn anetrain_kernel_input_count(
    k: *mut Kernel,
    out: *mut usize,
) -> anetrain_status {
    guard(|| put(out, handle(k, "k")?.inner.inputs().len(), "out"))
}

/// Stores the number of outputs in `*out`.
///
/// # Safety
/// `k` is a live kernel; `out` is writable.
#[no_mangle]
pub unsafe extern "C" fn anetrain_kernel_output_count(
    k: *mut Kernel,
    out: *mut usize,
) -> anetrain_status {
    guard(|| put(out, handle(k, "k")?.inner.outputs().len(), "out"))
}

/// Describes input `index` (in the order of the function signature).
///
/// # Safety
/// `k` is a live kernel; `out` is writable.
#[no_mangle]
pub unsafe extern "C" fn anetrain_kernel_input_info(
    k: *mut Kernel,
    index: usize,
    out: *mut TensorInfo,
) -> anetrain_status {
    guard(|| {
        let k = handle(k, "k")?;
        let info = describe(k.inner.inputs(), &k.input_names, index, "input")?;
        put(out, info, "out")
    })
}

/// Describes output `index` (in the order of the function's return list).
///
/// # Safety
/// `k` is a live kernel; `out` is writable.
#[no_mangle]
pub unsafe extern "C" fn anetrain_kernel_output_info(
    k: *mut Kernel,
    index: usize,
    out: *mut TensorInfo,
) -> anetrain_status {
    guard(|| {
        let k = handle(k, "k")?;
        let info = describe(k.inner.outputs(), &k.output_names, index, "output")?;
        put(out, info, "out")
    })
}

fn describe(
    specs: &[TensorSpec],
    names: &[CString],
    index: usize,
    kind: &str,
) -> Outcome<TensorInfo> {
    let spec = specs.get(index).ok_or_else(|| {
        Failure::new(
            ANETRAIN_ERR_NOT_FOUND,
            format!(
                "{kind} index {index} is out of range: the kernel has {} {kind}s",
                specs.len()
            ),
        )
    })?;
    let dims = &spec.ty.shape;
    if dims.len() > ANETRAIN_MAX_RANK {
        return Err(Failure::new(
            ANETRAIN_ERR_SIZE,
            format!(
                "{kind} `{}` has rank {}, more than ANETRAIN_MAX_RANK ({ANETRAIN_MAX_RANK})",
                spec.name,
                dims.len()
            ),
        ));
    }
    let mut shape = [0; ANETRAIN_MAX_RANK];
    shape[..dims.len()].copy_from_slice(dims);
    Ok(TensorInfo {
        name: names[index].as_ptr(),
        dtype: match spec.ty.dtype {
            DType::Fp16 => ANETRAIN_DTYPE_FP16,
            DType::Fp32 => ANETRAIN_DTYPE_FP32,
            _ => ANETRAIN_DTYPE_OTHER,
        },
        rank: dims.len(),
        shape,
        len: spec.numel(),
    })
}

/// The index of the port `name` among `specs`, checking that it holds `len` elements.
fn port(specs: &[TensorSpec], name: &str, len: usize, kind: &str) -> Outcome<usize> {
    let index = specs.iter().position(|s| s.name == name).ok_or_else(|| {
        let names: Vec<String> = specs
            .iter()
            .map(|s| format!("{} {}", s.name, s.ty))
            .collect();
        Failure::new(
            ANETRAIN_ERR_NOT_FOUND,
            format!(
                "the kernel has no {kind} named `{name}`; its {kind}s are: {}",
                names.join(", ")
            ),
        )
    })?;
    let spec = &specs[index];
    if spec.numel() != len {
        return Err(Failure::new(
            ANETRAIN_ERR_SIZE,
            format!(
                "{kind} `{name}` is {} ({} elements) but the buffer has {len}; pass exactly {} values",
                spec.ty,
                spec.numel(),
                spec.numel()
            ),
        ));
    }
    Ok(index)
}

/// What a caller's buffer holds, from the `anetrain_dtype` passed with it.
enum Buffer {
    F32,
    F16,
}

impl Buffer {
    fn of(dtype: anetrain_dtype) -> Outcome<Buffer> {
        match dtype {
            ANETRAIN_DTYPE_FP32 => Ok(Buffer::F32),
            ANETRAIN_DTYPE_FP16 => Ok(Buffer::F16),
            other => Err(Failure::new(
                ANETRAIN_ERR_INVALID_ARGUMENT,
                format!(
                    "buffer dtype {other} is not one a buffer can hold; pass ANETRAIN_DTYPE_FP32 \
                     (float values) or ANETRAIN_DTYPE_FP16 (uint16_t IEEE half bits)"
                ),
            )),
        }
    }
}

/// Replaces the whole of input `name` with the `len` values at `data` (row-major in its
/// declared shape): `float`s when `dtype` is `ANETRAIN_DTYPE_FP32`, IEEE half bits
/// (`uint16_t`) when it is `ANETRAIN_DTYPE_FP16`, whatever the input's own type.
///
/// # Safety
/// `k` is a live kernel; `name` is NUL-terminated; `data` holds `len` values of `dtype`.
#[no_mangle]
pub unsafe extern "C" fn anetrain_kernel_write_input(
    k: *mut Kernel,
    name: *const c_char,
    dtype: anetrain_dtype,
    data: *const c_void,
    len: usize,
) -> anetrain_status {
    guard(|| {
        let k = handle(k, "k")?;
        let index = port(k.inner.inputs(), text(name, "name")?, len, "input")?;
        match Buffer::of(dtype)? {
            Buffer::F32 => k
                .inner
                .write_input(index, slice(data.cast(), len, "data")?)?,
            Buffer::F16 => {
                let bits: &[u16] = slice(data.cast(), len, "data")?;
                let wide: Vec<f32> = bits.iter().map(|&b| f16::from_bits(b).to_f32()).collect();
                k.inner.write_input(index, &wide)?
            }
        }
        Ok(())
    })
}

/// Evaluates the kernel on its current inputs.
///
/// # Safety
/// `k` is a live kernel.
#[no_mangle]
pub unsafe extern "C" fn anetrain_kernel_run(k: *mut Kernel) -> anetrain_status {
    guard(|| {
        handle(k, "k")?.inner.run()?;
        Ok(())
    })
}

/// Copies all of output `name` (row-major in its declared shape) into the `len` values at
/// `data`: `float`s when `dtype` is `ANETRAIN_DTYPE_FP32`, IEEE half bits (`uint16_t`, rounded
/// to nearest even) when it is `ANETRAIN_DTYPE_FP16`.
///
/// # Safety
/// `k` is a live kernel; `name` is NUL-terminated; `data` has room for `len` values of `dtype`.
#[no_mangle]
pub unsafe extern "C" fn anetrain_kernel_read_output(
    k: *mut Kernel,
    name: *const c_char,
    dtype: anetrain_dtype,
    data: *mut c_void,
    len: usize,
) -> anetrain_status {
    guard(|| {
        let k = handle(k, "k")?;
        let index = port(k.inner.outputs(), text(name, "name")?, len, "output")?;
        match Buffer::of(dtype)? {
            Buffer::F32 => k
                .inner
                .read_output(index, slice_mut(data.cast(), len, "data")?)?,
            Buffer::F16 => {
                let out: &mut [u16] = slice_mut(data.cast(), len, "data")?;
                let mut wide = vec![0f32; len];
                k.inner.read_output(index, &mut wide)?;
                for (o, v) in out.iter_mut().zip(wide) {
                    *o = f16::from_f32(v).to_bits();
                }
            }
        }
        Ok(())
    })
}

/// Releases a kernel (NULL is ignored).
///
/// # Safety
/// `k` is NULL or a kernel not yet freed.
#[no_mangle]
pub unsafe extern "C" fn anetrain_kernel_free(k: *mut Kernel) {
    let _ = guard(|| {
        free_handle(k);
        Ok(())
    });
}

/// Stores the ANE compiles this process has made and the number it may make before it should
/// be restarted (the framework fails after about 119 in one process).
///
/// # Safety
/// `used` and `limit` are writable.
#[no_mangle]
pub unsafe extern "C" fn anetrain_compile_budget(
    used: *mut usize,
    limit: *mut usize,
) -> anetrain_status {
    guard(|| {
        let budget = anetrain_device::ane::CompileBudget::process();
        put(used, budget.used(), "used")?;
        put(limit, budget.limit(), "limit")
    })
}
