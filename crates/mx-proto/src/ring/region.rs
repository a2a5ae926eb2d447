//! Shared memory regions the rings live in.

use core::ptr::NonNull;
use std::alloc::{self, Layout};
use std::rc::Rc;
use std::sync::Arc;

/// The alignment every region must have: one page.
pub const REGION_ALIGN: usize = 4096;

/// A mapped block of memory that another party (process or VM) may share.
///
/// Implemented by the mapping types of the platform layer (a memfd mapping,
/// a Xen grant mapping) and by [`HeapRegion`] for in-process use. The ring
/// code only ever touches a region through atomic loads and stores, so a
/// peer writing anything at any time cannot cause undefined behaviour on
/// this side, only protocol errors, which the rings detect.
///
/// # Safety
///
/// An implementation promises that, for as long as the value exists (moves
/// included: the pointer must not depend on where the value itself lives):
/// - [`as_ptr`](Self::as_ptr) always returns the same non-null pointer,
///   aligned to [`REGION_ALIGN`] (4096) bytes;
/// - the `len()` bytes from it stay mapped, readable and writable, and
///   `len()` never changes;
/// - code in this process accesses those bytes only through atomic
///   operations (or not at all) while rings use them: the region is shared
///   memory, not an ordinary buffer.
pub unsafe trait SharedRegion {
    /// First byte of the region.
    fn as_ptr(&self) -> *mut u8;
    /// Length of the region in bytes.
    fn len(&self) -> usize;
    /// Whether the region is empty (never the case for a usable one).
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

// SAFETY: a shared reference forwards to the referent, which upholds the
// contract for at least as long as the reference exists.
unsafe impl<R: SharedRegion + ?Sized> SharedRegion for &R {
    fn as_ptr(&self) -> *mut u8 {
        (**self).as_ptr()
    }
    fn len(&self) -> usize {
        (**self).len()
    }
}

// SAFETY: the `Arc` keeps the referent alive and in place; moving the `Arc`
// moves only the pointer.
unsafe impl<R: SharedRegion + ?Sized> SharedRegion for Arc<R> {
    fn as_ptr(&self) -> *mut u8 {
        (**self).as_ptr()
    }
    fn len(&self) -> usize {
        (**self).len()
    }
}

// SAFETY: as for `Arc`.
unsafe impl<R: SharedRegion + ?Sized> SharedRegion for Rc<R> {
    fn as_ptr(&self) -> *mut u8 {
        (**self).as_ptr()
    }
    fn len(&self) -> usize {
        (**self).len()
    }
}

// SAFETY: as for `Arc`: the box owns the referent at a fixed heap address.
unsafe impl<R: SharedRegion + ?Sized> SharedRegion for Box<R> {
    fn as_ptr(&self) -> *mut u8 {
        (**self).as_ptr()
    }
    fn len(&self) -> usize {
        (**self).len()
    }
}

/// Page-aligned, zeroed heap memory usable as a [`SharedRegion`] between
/// threads of one process (tests, benches, an embedded backend).
pub struct HeapRegion {
    ptr: NonNull<u8>,
    len: usize,
}

impl HeapRegion {
    /// Allocates `len` bytes rounded up to a whole number of 4096-byte pages
    /// (at least one), zeroed and page-aligned.
    ///
    /// # Panics
    ///
    /// If the rounded length overflows `isize`, or aborts (through
    /// [`alloc::handle_alloc_error`]) if the allocation fails.
    pub fn new(len: usize) -> Self {
        let len = len.max(1).next_multiple_of(REGION_ALIGN);
        let layout = Layout::from_size_align(len, REGION_ALIGN).expect("region too large");
        // SAFETY: `layout` has a non-zero size.
        let raw = unsafe { alloc::alloc_zeroed(layout) };
        let Some(ptr) = NonNull::new(raw) else {
            alloc::handle_alloc_error(layout)
        };
        HeapRegion { ptr, len }
    }
}

impl Drop for HeapRegion {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with exactly this size and alignment.
        unsafe {
            alloc::dealloc(
                self.ptr.as_ptr(),
                Layout::from_size_align_unchecked(self.len, REGION_ALIGN),
            )
        };
    }
}

impl core::fmt::Debug for HeapRegion {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("HeapRegion")
            .field("ptr", &self.ptr)
            .field("len", &self.len)
            .finish()
    }
}

// SAFETY: the allocation is owned, fixed in place until drop, page-aligned
// and `len` bytes long; its contents are only reached through `as_ptr`.
unsafe impl SharedRegion for HeapRegion {
    fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }
    fn len(&self) -> usize {
        self.len
    }
}

// SAFETY: `HeapRegion` owns plain memory; handing the owner to another
// thread moves no data, and the memory is only reached through raw pointers
// whose users take on the shared-memory access rules above.
unsafe impl Send for HeapRegion {}
// SAFETY: `&HeapRegion` gives out only the pointer and the length; all
// access through the pointer is atomic by the `SharedRegion` contract.
unsafe impl Sync for HeapRegion {}
