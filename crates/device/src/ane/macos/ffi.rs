//! The C APIs the ANE path needs besides the Objective-C runtime: IOSurface, CoreFoundation
//! release, and `dlopen` of the private framework.

use objc2::encode::{Encoding, RefEncode};
use std::ffi::c_void;

/// The opaque `struct __IOSurface`; `*mut IOSurface` is an `IOSurfaceRef`.
///
/// Its encoding is what the framework's `+objectWithIOSurface:` declares (`^{__IOSurface=}`),
/// so objc2's debug-build signature check accepts the raw CF pointer as that argument.
#[repr(C)]
pub(super) struct IOSurface {
    _private: [u8; 0],
}

// SAFETY: the encoding of a pointer to `struct __IOSurface`, as Objective-C's @encode gives it.
unsafe impl RefEncode for IOSurface {
    const ENCODING_REF: Encoding = Encoding::Pointer(&Encoding::Struct("__IOSurface", &[]));
}

/// `kIOSurfaceLockReadOnly`: a CPU read that will not dirty the surface.
pub(super) const LOCK_READ_ONLY: u32 = 1;

#[link(name = "IOSurface", kind = "framework")]
extern "C" {
    pub(super) static kIOSurfaceWidth: *const c_void;
    pub(super) static kIOSurfaceHeight: *const c_void;
    pub(super) static kIOSurfaceBytesPerElement: *const c_void;
    pub(super) static kIOSurfaceBytesPerRow: *const c_void;
    pub(super) static kIOSurfaceAllocSize: *const c_void;
    pub(super) static kIOSurfacePixelFormat: *const c_void;

    pub(super) fn IOSurfaceCreate(properties: *const c_void) -> *mut IOSurface;
    pub(super) fn IOSurfaceLock(buffer: *mut IOSurface, options: u32, seed: *mut u32) -> i32;
    pub(super) fn IOSurfaceUnlock(buffer: *mut IOSurface, options: u32, seed: *mut u32) -> i32;
    pub(super) fn IOSurfaceGetBaseAddress(buffer: *mut IOSurface) -> *mut c_void;
    pub(super) fn IOSurfaceGetAllocSize(buffer: *mut IOSurface) -> usize;
}

#[link(name = "CoreFoundation", kind = "framework")]
extern "C" {
    pub(super) fn CFRelease(cf: *const c_void);
}
