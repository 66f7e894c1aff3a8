//! How big every IOSurface of a kernel is, and the shape rules its ports must follow
//! (ane-reference §2.1, §2.4, §2.5).
//!
//! The rules conflict between chips, so they live in a [`SurfacePolicy`] whose default is the
//! conservative reading: every last axis a multiple of 32 and at least 32, every buffer at least
//! 48 KiB, all inputs at one allocation size and all outputs at another.
//!
//! Surfaces are one row of bytes (width = bytes, height = 1), the layout maderix and Orion run
//! on M1–M5. AB's layout of 4096-byte rows is kept only as a retry ([`RowLayout::retry_after`])
//! when the first one fails with the framework's size error.

use crate::{DeviceError, Result, TensorSpec};
use anetrain_mil::DType;

/// Row pitch of multi-row surfaces: a power of two, so IOSurface never pads between rows and the
/// payload stays contiguous from the base address, which is how the ANE reads it.
pub const WIDE_ROW_BYTES: usize = 4096;

/// Error texts that mean the framework or IOSurface rejected a surface's size or shape: eval
/// status 0x1d (§1.7, §2.4) and a refused `IOSurfaceCreate`.
pub const SIZE_ERROR_MARKERS: [&str; 2] = ["status=0x1d", "IOSurfaceCreate refused"];

/// How a surface's bytes are arranged into IOSurface rows (§2.1).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RowLayout {
    /// One row of `N` bytes (maderix, Orion): what every surface gets first.
    #[default]
    SingleRow,
    /// Rows of [`WIDE_ROW_BYTES`] (AB above 16 KiB): the retry.
    MultiRow,
}

impl RowLayout {
    /// The layout to retry with after `error`, or `None` when the error is not about sizes
    /// or the multi-row layout already failed too.
    pub fn retry_after(self, error: &str) -> Option<RowLayout> {
        let size_error = SIZE_ERROR_MARKERS.iter().any(|m| error.contains(m));
        (self == RowLayout::SingleRow && size_error).then_some(RowLayout::MultiRow)
    }
}

/// The shape and size rules a kernel's ports must follow on one chip.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SurfacePolicy {
    /// Smallest allocation in bytes; smaller buffers compile and then fail at eval with 0x1d.
    pub min_bytes: usize,
    /// The last axis of every port must be a multiple of this (1 disables the rule).
    pub width_multiple: usize,
    /// The last axis of every port must be at least this.
    pub min_width: usize,
}

impl SurfacePolicy {
    /// The conservative policy of §2.4: widths a multiple of 32 and ≥ 32, buffers ≥ 48 KiB.
    pub const CONSERVATIVE: SurfacePolicy = SurfacePolicy {
        min_bytes: 48 * 1024,
        width_multiple: 32,
        min_width: 32,
    };

    /// Checks that `spec` has a dtype the surfaces can hold and a last axis this policy allows.
    ///
    /// `role` is `input` or `output`, for the message.
    pub fn check_port(&self, role: &str, spec: &TensorSpec) -> Result<()> {
        if !matches!(spec.ty.dtype, DType::Fp16 | DType::Fp32) {
            return Err(DeviceError::Layout(format!(
                "{role} `{}` is {}; ANE kernel inputs and outputs must be fp16 or fp32 \
                 (cast inside the program)",
                spec.name, spec.ty
            )));
        }
        let width = spec.ty.shape.last().copied().unwrap_or(1);
        let multiple = self.width_multiple.max(1);
        if width < self.min_width || width % multiple != 0 {
            let padded = round_up(width.max(self.min_width), multiple);
            return Err(DeviceError::Layout(format!(
                "{role} `{}` is {} with last axis {width}; the ANE needs the last axis to be a \
                 multiple of {multiple} and at least {} (other widths are laid out with padded \
                 rows and read back wrong): pad the sequence to {padded}",
                spec.name, spec.ty, self.min_width
            )));
        }
        Ok(())
    }

    /// The allocation for a payload of `bytes` in `rows`: at least the minimum, and a whole
    /// number of rows in the multi-row layout.
    pub fn allocation(&self, bytes: usize, rows: RowLayout) -> usize {
        let n = bytes.max(self.min_bytes).max(1);
        match rows {
            RowLayout::SingleRow => n,
            RowLayout::MultiRow => round_up(n, WIDE_ROW_BYTES),
        }
    }
}

impl Default for SurfacePolicy {
    fn default() -> SurfacePolicy {
        SurfacePolicy::CONSERVATIVE
    }
}

/// The IOSurface creation properties of one flat byte buffer (§2.1), as plain numbers; the
/// macOS code turns them into the `kIOSurface*` dictionary.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SurfaceProperties {
    /// `kIOSurfaceWidth`, in bytes since every element is one byte.
    pub width: usize,
    /// `kIOSurfaceHeight`.
    pub height: usize,
    /// `kIOSurfaceBytesPerElement`: always 1; the MIL declaration alone gives the buffer a type.
    pub bytes_per_element: usize,
    /// `kIOSurfaceBytesPerRow`: equal to the width, so rows are never padded.
    pub bytes_per_row: usize,
    /// `kIOSurfaceAllocSize`: `width * height`.
    pub alloc_size: usize,
    /// `kIOSurfacePixelFormat`: 0, no pixel format.
    pub pixel_format: u32,
}

impl SurfaceProperties {
    /// Properties for an allocation of `alloc` bytes in `rows`. A multi-row `alloc` should
    /// come from [`SurfacePolicy::allocation`] (whole rows); otherwise it is rounded up.
    pub fn for_allocation(alloc: usize, rows: RowLayout) -> SurfaceProperties {
        let (width, height) = match rows {
            RowLayout::SingleRow => (alloc, 1),
            RowLayout::MultiRow => (WIDE_ROW_BYTES, alloc.div_ceil(WIDE_ROW_BYTES)),
        };
        SurfaceProperties {
            width,
            height,
            bytes_per_element: 1,
            bytes_per_row: width,
            alloc_size: width * height,
            pixel_format: 0,
        }
    }
}

/// The byte sizes of every surface of one kernel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SurfaceLayout {
    /// Packed payload bytes of each input, in signature order.
    pub input_payloads: Vec<usize>,
    /// Packed payload bytes of each output, in return order.
    pub output_payloads: Vec<usize>,
    /// The one allocation every input surface gets (the largest input's, §2.5).
    pub input_alloc: usize,
    /// The one allocation every output surface gets (the largest output's).
    pub output_alloc: usize,
    /// How the surfaces are arranged in rows.
    pub rows: RowLayout,
    policy: SurfacePolicy,
}

impl SurfaceLayout {
    /// Checks every port against `policy` and sizes the surfaces.
    pub fn plan(
        inputs: &[TensorSpec],
        outputs: &[TensorSpec],
        policy: &SurfacePolicy,
    ) -> Result<SurfaceLayout> {
        if outputs.is_empty() {
            return Err(DeviceError::Layout(
                "the kernel has no outputs; return at least one tensor from `main`".into(),
            ));
        }
        for spec in inputs {
            policy.check_port("input", spec)?;
        }
        for spec in outputs {
            policy.check_port("output", spec)?;
        }
        let input_payloads: Vec<usize> = inputs.iter().map(|s| s.ty.size_bytes()).collect();
        let output_payloads: Vec<usize> = outputs.iter().map(|s| s.ty.size_bytes()).collect();
        let mut layout = SurfaceLayout {
            input_alloc: 0,
            output_alloc: 0,
            rows: RowLayout::SingleRow,
            policy: *policy,
            input_payloads,
            output_payloads,
        };
        layout.size(&[], &[]);
        Ok(layout)
    }

    /// Raises the allocations to hold what the loaded model says each port needs (its
    /// `BatchStride`, in signature / return order), which may exceed the packed payload.
    pub fn reserve(&mut self, inputs: &[usize], outputs: &[usize]) {
        self.size(inputs, outputs);
    }

    /// The same surfaces arranged in `rows`.
    pub fn with_rows(&self, rows: RowLayout) -> SurfaceLayout {
        let mut layout = self.clone();
        layout.rows = rows;
        let (inputs, outputs) = (vec![self.input_alloc], vec![self.output_alloc]);
        layout.size(&inputs, &outputs);
        layout
    }

    fn size(&mut self, inputs: &[usize], outputs: &[usize]) {
        let largest = |a: &[usize], b: &[usize], floor: usize| {
            a.iter().chain(b).copied().max().unwrap_or(0).max(floor)
        };
        let (rows, policy) = (self.rows, self.policy);
        let input = largest(&self.input_payloads, inputs, self.input_alloc);
        let output = largest(&self.output_payloads, outputs, self.output_alloc);
        self.input_alloc = policy.allocation(input, rows);
        self.output_alloc = policy.allocation(output, rows);
    }

    /// Creation properties of the input surfaces.
    pub fn input_properties(&self) -> SurfaceProperties {
        SurfaceProperties::for_allocation(self.input_alloc, self.rows)
    }

    /// Creation properties of the output surfaces.
    pub fn output_properties(&self) -> SurfaceProperties {
        SurfaceProperties::for_allocation(self.output_alloc, self.rows)
    }
}

fn round_up(n: usize, multiple: usize) -> usize {
    n.div_ceil(multiple) * multiple
}
