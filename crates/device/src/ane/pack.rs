//! Conversion between callers' `f32` slices and the raw fp16 or fp32 bytes of an IOSurface
//! (ane-reference §2.3): whole tensors row-major in their declared shape, channel × column
//! regions of `[1, C, 1, S]` inputs, and channel ranges of `[1, C, H, W]` outputs.
//!
//! The payload always starts at byte 0 and is packed at the declared shape; bytes past it (the
//! surface is padded to a minimum size) are never touched.
//!
//! Values going into fp16 are converted round-to-nearest-even and **saturate**: anything beyond
//! ±65504, infinities included, becomes ±65504, because the ANE datapath has no headroom and an
//! infinity in an input poisons every sum it touches. NaN is kept as NaN rather than zeroed (as
//! Orion does): a NaN reaching the device is a bug upstream, and the trainer's loss check should
//! see it instead of training on silently repaired data.

use crate::{DeviceError, Result, TensorSpec};
use anetrain_mil::DType;
use half::f16;
use std::ops::Range;

/// The largest finite fp16 value, where conversions saturate.
pub const F16_MAX: f32 = 65504.0;

/// An element type a surface can hold.
pub trait SurfaceElement: Copy {
    /// The MIL dtype this element type stores.
    const DTYPE: DType;
    /// Converts a caller's value for storage.
    fn store(value: f32) -> Self;
    /// Widens a stored value for the caller.
    fn load(self) -> f32;
}

impl SurfaceElement for f16 {
    const DTYPE: DType = DType::Fp16;

    fn store(value: f32) -> f16 {
        // `clamp` passes NaN through, which is the documented choice.
        f16::from_f32(value.clamp(-F16_MAX, F16_MAX))
    }

    fn load(self) -> f32 {
        self.to_f32()
    }
}

impl SurfaceElement for f32 {
    const DTYPE: DType = DType::Fp32;

    fn store(value: f32) -> f32 {
        value
    }

    fn load(self) -> f32 {
        self
    }
}

/// Writes all of `data` (row-major in `spec`'s shape) to the start of `dst`.
pub fn write_tensor<E: SurfaceElement>(
    spec: &TensorSpec,
    dst: &mut [E],
    data: &[f32],
) -> Result<()> {
    let n = spec.numel();
    spec.check_len("data", data.len())?;
    let dst = payload_mut(spec, dst, n)?;
    // One conversion per element; the surface is written once, front to back.
    for (d, &v) in dst.iter_mut().zip(data) {
        *d = E::store(v);
    }
    Ok(())
}

/// Writes `data`, laid out `[channels.len()][columns.len()]`, into channels `channels` and
/// columns `columns` of a `[1, C, 1, S]` tensor stored in `dst`, leaving the rest untouched.
pub fn write_region<E: SurfaceElement>(
    spec: &TensorSpec,
    dst: &mut [E],
    channels: Range<usize>,
    columns: Range<usize>,
    data: &[f32],
) -> Result<()> {
    let s = spec.check_region(&channels, &columns, data.len())?;
    let width = columns.len();
    let dst = payload_mut(spec, dst, spec.numel())?;
    if width == 0 {
        return Ok(());
    }
    // One contiguous run of `width` elements per channel.
    for (row, ch) in data.chunks_exact(width).zip(channels) {
        let start = ch * s + columns.start;
        for (d, &v) in dst[start..start + width].iter_mut().zip(row) {
            *d = E::store(v);
        }
    }
    Ok(())
}

/// Reads all of the tensor stored at the start of `src` into `out` (row-major).
pub fn read_tensor<E: SurfaceElement>(spec: &TensorSpec, src: &[E], out: &mut [f32]) -> Result<()> {
    let n = spec.numel();
    spec.check_len("the output buffer", out.len())?;
    let src = payload(spec, src, n)?;
    for (o, &v) in out.iter_mut().zip(src) {
        *o = v.load();
    }
    Ok(())
}

/// Reads channels `channels` of a `[1, C, H, W]` tensor stored in `src` into `out`.
pub fn read_channels<E: SurfaceElement>(
    spec: &TensorSpec,
    src: &[E],
    channels: Range<usize>,
    out: &mut [f32],
) -> Result<()> {
    let stride = spec.check_channels(&channels, out.len())?;
    let src = payload(spec, src, spec.numel())?;
    // Channels are contiguous, so a channel range is one contiguous run.
    let run = &src[channels.start * stride..channels.end * stride];
    for (o, &v) in out.iter_mut().zip(run) {
        *o = v.load();
    }
    Ok(())
}

/// [`write_tensor`] on raw surface bytes, choosing the element type from `spec`'s dtype.
pub fn write_tensor_bytes(spec: &TensorSpec, dst: &mut [u8], data: &[f32]) -> Result<()> {
    match spec.ty.dtype {
        DType::Fp16 => write_tensor(spec, elements_mut::<f16>(spec, dst)?, data),
        DType::Fp32 => write_tensor(spec, elements_mut::<f32>(spec, dst)?, data),
        other => Err(unsupported_dtype(spec, other)),
    }
}

/// [`write_region`] on raw surface bytes.
pub fn write_region_bytes(
    spec: &TensorSpec,
    dst: &mut [u8],
    channels: Range<usize>,
    columns: Range<usize>,
    data: &[f32],
) -> Result<()> {
    match spec.ty.dtype {
        DType::Fp16 => write_region(
            spec,
            elements_mut::<f16>(spec, dst)?,
            channels,
            columns,
            data,
        ),
        DType::Fp32 => write_region(
            spec,
            elements_mut::<f32>(spec, dst)?,
            channels,
            columns,
            data,
        ),
        other => Err(unsupported_dtype(spec, other)),
    }
}

/// [`read_tensor`] on raw surface bytes.
pub fn read_tensor_bytes(spec: &TensorSpec, src: &[u8], out: &mut [f32]) -> Result<()> {
    match spec.ty.dtype {
        DType::Fp16 => read_tensor(spec, elements::<f16>(spec, src)?, out),
        DType::Fp32 => read_tensor(spec, elements::<f32>(spec, src)?, out),
        other => Err(unsupported_dtype(spec, other)),
    }
}

/// [`read_channels`] on raw surface bytes.
pub fn read_channels_bytes(
    spec: &TensorSpec,
    src: &[u8],
    channels: Range<usize>,
    out: &mut [f32],
) -> Result<()> {
    match spec.ty.dtype {
        DType::Fp16 => read_channels(spec, elements::<f16>(spec, src)?, channels, out),
        DType::Fp32 => read_channels(spec, elements::<f32>(spec, src)?, channels, out),
        other => Err(unsupported_dtype(spec, other)),
    }
}

/// Views surface bytes as elements. IOSurface base addresses are page aligned, so a misaligned
/// buffer means a caller bug, reported rather than read at the wrong offset.
fn elements_mut<'a, E: SurfaceElement>(
    spec: &TensorSpec,
    bytes: &'a mut [u8],
) -> Result<&'a mut [E]> {
    // SAFETY: `E` is f16 or f32, plain-old-data types for which every bit pattern is valid.
    let (head, body, _) = unsafe { bytes.align_to_mut::<E>() };
    if !head.is_empty() {
        return Err(misaligned(spec));
    }
    Ok(body)
}

fn elements<'a, E: SurfaceElement>(spec: &TensorSpec, bytes: &'a [u8]) -> Result<&'a [E]> {
    // SAFETY: as in `elements_mut`.
    let (head, body, _) = unsafe { bytes.align_to::<E>() };
    if !head.is_empty() {
        return Err(misaligned(spec));
    }
    Ok(body)
}

fn misaligned(spec: &TensorSpec) -> DeviceError {
    DeviceError::Layout(format!(
        "the buffer of `{}` is not aligned for {}; surfaces must start on an element boundary",
        spec.name, spec.ty.dtype
    ))
}

fn unsupported_dtype(spec: &TensorSpec, dtype: DType) -> DeviceError {
    DeviceError::Layout(format!(
        "`{}` is {dtype}; ANE surfaces hold fp16 or fp32 (cast inside the program)",
        spec.name
    ))
}

fn payload_mut<'a, E>(spec: &TensorSpec, buf: &'a mut [E], n: usize) -> Result<&'a mut [E]> {
    let len = buf.len();
    buf.get_mut(..n).ok_or_else(|| too_small(spec, len, n))
}

fn payload<'a, E>(spec: &TensorSpec, buf: &'a [E], n: usize) -> Result<&'a [E]> {
    buf.get(..n).ok_or_else(|| too_small(spec, buf.len(), n))
}

fn too_small(spec: &TensorSpec, len: usize, n: usize) -> DeviceError {
    DeviceError::Layout(format!(
        "the buffer of `{}` holds {len} elements but {} needs {n}",
        spec.name, spec.ty
    ))
}
