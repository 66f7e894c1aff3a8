//! One IOSurface: a flat byte buffer the ANE reads or writes by DMA (ane-reference §2.1, §2.2).

use super::ffi::{self, IOSurface};
use crate::ane::surface_layout::SurfaceProperties;
use crate::{DeviceError, Result};
use objc2::rc::{autoreleasepool, Retained};
use objc2_foundation::{NSDictionary, NSNumber, NSString};
use std::ptr::{self, NonNull};

/// An owned IOSurface, released on drop. CPU access goes through [`Surface::write`] and
/// [`Surface::read`], which hold the IOSurface lock for exactly the duration of the closure.
#[derive(Debug)]
pub(super) struct Surface {
    raw: NonNull<IOSurface>,
    len: usize,
}

// SAFETY: an IOSurface is a reference-counted kernel object usable from any thread; the CPU
// mapping is only touched under its lock, through `&mut self` for writes.
unsafe impl Send for Surface {}

impl Surface {
    /// Creates a zero-filled surface with `properties`.
    pub(super) fn new(properties: &SurfaceProperties) -> Result<Surface> {
        let raw = autoreleasepool(|_| {
            // SAFETY: the kIOSurface* keys are immutable CFStrings exported by IOSurface, and a
            // CFStringRef is toll-free bridged to NSString.
            let keys: [&NSString; 6] = unsafe {
                [
                    &*ffi::kIOSurfaceWidth.cast::<NSString>(),
                    &*ffi::kIOSurfaceHeight.cast::<NSString>(),
                    &*ffi::kIOSurfaceBytesPerElement.cast::<NSString>(),
                    &*ffi::kIOSurfaceBytesPerRow.cast::<NSString>(),
                    &*ffi::kIOSurfaceAllocSize.cast::<NSString>(),
                    &*ffi::kIOSurfacePixelFormat.cast::<NSString>(),
                ]
            };
            let values: [Retained<NSNumber>; 6] = [
                NSNumber::new_usize(properties.width),
                NSNumber::new_usize(properties.height),
                NSNumber::new_usize(properties.bytes_per_element),
                NSNumber::new_usize(properties.bytes_per_row),
                NSNumber::new_usize(properties.alloc_size),
                NSNumber::new_u32(properties.pixel_format),
            ];
            let values: Vec<&NSNumber> = values.iter().map(|v| &**v).collect();
            let dict = NSDictionary::from_slices(&keys, &values);
            // SAFETY: an NSDictionary is toll-free bridged to CFDictionaryRef; IOSurfaceCreate
            // copies what it needs and returns a +1 reference or NULL.
            unsafe { ffi::IOSurfaceCreate(Retained::as_ptr(&dict).cast()) }
        });
        let raw = NonNull::new(raw).ok_or_else(|| {
            DeviceError::Runtime(format!(
                "IOSurfaceCreate refused a {}-byte surface ({}×{} bytes); the system may be out \
                 of memory for device buffers",
                properties.alloc_size, properties.width, properties.height
            ))
        })?;
        // SAFETY: `raw` is a live surface.
        let len = unsafe { ffi::IOSurfaceGetAllocSize(raw.as_ptr()) };
        let mut surface = Surface { raw, len };
        if len < properties.alloc_size {
            return Err(DeviceError::Runtime(format!(
                "IOSurface allocated {len} bytes where {} were requested",
                properties.alloc_size
            )));
        }
        surface.write(|bytes| {
            bytes.fill(0);
            Ok(())
        })?;
        Ok(surface)
    }

    /// The `IOSurfaceRef`, for `+[_ANEIOSurfaceObject objectWithIOSurface:]`.
    pub(super) fn as_ptr(&self) -> *mut IOSurface {
        self.raw.as_ptr()
    }

    /// Runs `f` on the whole allocation under a read-write lock.
    pub(super) fn write<R>(&mut self, f: impl FnOnce(&mut [u8]) -> Result<R>) -> Result<R> {
        self.lock(0)?;
        // SAFETY: while locked, the base address maps `len` bytes that nothing else in this
        // process touches (`&mut self`); no evaluation is in flight, as `run` is synchronous.
        let bytes = unsafe {
            std::slice::from_raw_parts_mut(
                ffi::IOSurfaceGetBaseAddress(self.raw.as_ptr()).cast::<u8>(),
                self.len,
            )
        };
        let result = f(bytes);
        self.unlock(0)?;
        result
    }

    /// Runs `f` on the whole allocation under a read-only lock.
    pub(super) fn read<R>(&self, f: impl FnOnce(&[u8]) -> Result<R>) -> Result<R> {
        self.lock(ffi::LOCK_READ_ONLY)?;
        // SAFETY: as in `write`; the read-only lock forbids writers.
        let bytes = unsafe {
            std::slice::from_raw_parts(
                ffi::IOSurfaceGetBaseAddress(self.raw.as_ptr()).cast::<u8>(),
                self.len,
            )
        };
        let result = f(bytes);
        self.unlock(ffi::LOCK_READ_ONLY)?;
        result
    }

    fn lock(&self, options: u32) -> Result<()> {
        // SAFETY: a live surface; the seed out-parameter may be NULL.
        let status = unsafe { ffi::IOSurfaceLock(self.raw.as_ptr(), options, ptr::null_mut()) };
        check(status, "lock")
    }

    fn unlock(&self, options: u32) -> Result<()> {
        // SAFETY: as in `lock`, with the same options the lock was taken with.
        let status = unsafe { ffi::IOSurfaceUnlock(self.raw.as_ptr(), options, ptr::null_mut()) };
        check(status, "unlock")
    }
}

impl Drop for Surface {
    fn drop(&mut self) {
        // SAFETY: we own the +1 reference IOSurfaceCreate returned.
        unsafe { ffi::CFRelease(self.raw.as_ptr().cast_const().cast()) }
    }
}

fn check(status: i32, what: &str) -> Result<()> {
    if status == 0 {
        Ok(())
    } else {
        Err(DeviceError::Runtime(format!(
            "IOSurface {what} failed with kern_return_t {status:#x}"
        )))
    }
}
