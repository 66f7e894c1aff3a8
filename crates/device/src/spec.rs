//! Kernel ports ([`TensorSpec`]) and the bounds every device checks before touching a port's
//! buffer: whole-tensor lengths, `[1, C, 1, S]` regions and channel ranges.

use crate::error::{DeviceError, Result};
use anetrain_mil::TensorType;
use std::ops::Range;

/// A named, typed kernel input or output.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorSpec {
    pub name: String,
    pub ty: TensorType,
}

impl TensorSpec {
    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.ty.numel()
    }

    /// Elements per channel (product of the axes after axis 1) of a rank-4 `[1, C, H, W]` tensor.
    pub fn channel_stride(&self) -> Result<usize> {
        match self.ty.shape.as_slice() {
            [1, _, h, w] => Ok(h * w),
            _ => Err(DeviceError::Layout(format!(
                "`{}` has shape {:?}; channel access needs [1, C, H, W]",
                self.name, self.ty.shape
            ))),
        }
    }

    /// Checks that a buffer of `len` values (`what` names it) holds the whole tensor.
    pub fn check_len(&self, what: &str, len: usize) -> Result<()> {
        if len != self.numel() {
            return Err(DeviceError::Layout(format!(
                "{what} for `{}` has {len} values but it needs {n}: {} has {n} elements",
                self.name,
                self.ty,
                n = self.numel()
            )));
        }
        Ok(())
    }

    /// Checks a write of `len` values, laid out `[channels][columns]`, into a `[1, C, 1, S]`
    /// tensor; returns `S`, the distance between channels.
    pub fn check_region(
        &self,
        channels: &Range<usize>,
        columns: &Range<usize>,
        len: usize,
    ) -> Result<usize> {
        let &[1, c, 1, s] = self.ty.shape.as_slice() else {
            return Err(DeviceError::Layout(format!(
                "`{}` is {}; region writes need a [1, C, 1, S] tensor",
                self.name, self.ty
            )));
        };
        self.check_range("channel", channels, c)?;
        self.check_range("column", columns, s)?;
        let want = channels.len() * columns.len();
        if len != want {
            return Err(DeviceError::Layout(format!(
                "a region of {} channels × {} columns of `{}` needs {want} values, got {len}",
                channels.len(),
                columns.len(),
                self.name
            )));
        }
        Ok(s)
    }

    /// Checks a read of `channels` of a `[1, C, H, W]` tensor into `len` values; returns the
    /// channel stride.
    pub fn check_channels(&self, channels: &Range<usize>, len: usize) -> Result<usize> {
        let stride = self.channel_stride()?;
        self.check_range("channel", channels, self.ty.shape[1])?;
        let want = channels.len() * stride;
        if len != want {
            return Err(DeviceError::Layout(format!(
                "channels {}..{} of `{}` hold {want} values but the buffer holds {len}",
                channels.start, channels.end, self.name
            )));
        }
        Ok(stride)
    }

    fn check_range(&self, what: &str, r: &Range<usize>, len: usize) -> Result<()> {
        if r.start > r.end || r.end > len {
            return Err(DeviceError::Layout(format!(
                "{what} range {}..{} is outside `{}` ({}), which has {len} {what}s",
                r.start, r.end, self.name, self.ty
            )));
        }
        Ok(())
    }
}
