//! Checked access to a mapped shared-memory segment by byte offset.
//!
//! A `View` knows how long its mapping is, and every accessor checks that the bytes it touches
//! lie inside it (and, for atomics, are aligned). Offsets are computed from a geometry that was
//! validated against the mapping, and lengths read from shared memory are validated or clamped
//! by the callers; the checks here are the backstop: a wrong offset panics (a Python
//! exception through the bindings), it never reads or writes outside the mapping.

use crate::layout::Geometry;
use crate::sync::{AtomicU32, AtomicU64};

/// A checked window on a whole mapping (the fixture store uses it as it is).
#[derive(Clone, Copy)]
pub struct Shm {
    base: *mut u8,
    len: usize,
}

/// A ring segment: its mapping and the geometry validated against it.
#[derive(Clone, Copy)]
pub struct View {
    shm: Shm,
    pub geo: Geometry,
}

impl std::ops::Deref for View {
    type Target = Shm;
    fn deref(&self) -> &Shm {
        &self.shm
    }
}

// SAFETY: a Shm is a (pointer, length) pair into a MAP_SHARED mapping that other processes
// write concurrently anyway; every shared word is accessed through atomics, and payload bytes
// are only copied by the process that holds the claim on their cell or chunk (see `protocol`
// and `arena`). Nothing about it is tied to the thread that made it.
unsafe impl Send for Shm {}
// SAFETY: as above; `&Shm` only hands out atomics and checked byte copies.
unsafe impl Sync for Shm {}

#[cold]
#[inline(never)]
fn out_of_bounds(off: usize, size: usize, len: usize) -> ! {
    panic!("shared-memory access of {size} bytes at offset {off} outside the {len}-byte segment")
}

impl View {
    /// A view of a ring segment whose geometry the caller checked: `geo.total_len() <= shm.len()`.
    pub fn new(shm: Shm, geo: Geometry) -> View {
        assert!(geo.total_len() <= shm.len(), "ring geometry larger than its segment");
        View { shm, geo }
    }
}

impl Shm {
    /// # Safety
    /// `base` must point to a readable and writable mapping of at least `len` bytes that
    /// outlives the returned value (and every copy of it).
    pub unsafe fn new(base: *mut u8, len: usize) -> Shm {
        Shm { base, len }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Does `[off, off+size)` lie inside the mapping?
    #[inline]
    pub fn fits(&self, off: usize, size: usize) -> bool {
        off.checked_add(size).is_some_and(|end| end <= self.len)
    }

    #[inline]
    fn check(&self, off: usize, size: usize, align: usize) {
        if !self.fits(off, size) || !off.is_multiple_of(align) {
            out_of_bounds(off, size, self.len)
        }
    }

    #[inline]
    pub fn a64(&self, off: usize) -> &AtomicU64 {
        self.check(off, 8, 8);
        // SAFETY: checked above that the 8 bytes at `off` are inside the mapping (which outlives
        // `self`, see `new`) and 8-aligned (the mapping is page-aligned); words of a segment are
        // only ever accessed atomically, so this reference does not alias a plain access.
        unsafe { &*(self.base.add(off) as *const AtomicU64) }
    }

    #[inline]
    pub fn a32(&self, off: usize) -> &AtomicU32 {
        self.check(off, 4, 4);
        // SAFETY: as in `a64`, for 4 bytes, 4-aligned.
        unsafe { &*(self.base.add(off) as *const AtomicU32) }
    }

    /// Plain (non-atomic) header/cell fields are read and written as relaxed atomics: another
    /// process may touch the same bytes (it must not, by the protocol, but a buggy or hostile
    /// one could), and a relaxed atomic access is defined behaviour whatever it does.
    #[inline]
    pub fn write_u32(&self, off: usize, v: u32) {
        self.a32(off).store(v, crate::sync::Ordering::Relaxed)
    }
    #[inline]
    pub fn read_u32(&self, off: usize) -> u32 {
        self.a32(off).load(crate::sync::Ordering::Relaxed)
    }
    #[inline]
    pub fn write_u64(&self, off: usize, v: u64) {
        self.a64(off).store(v, crate::sync::Ordering::Relaxed)
    }
    #[inline]
    pub fn read_u64(&self, off: usize) -> u64 {
        self.a64(off).load(crate::sync::Ordering::Relaxed)
    }

    pub fn copy_in(&self, off: usize, data: &[u8]) {
        self.check(off, data.len(), 1);
        // SAFETY: the destination range was checked to lie inside the mapping; the source is a
        // Rust slice, which cannot overlap a MAP_SHARED mapping we hand out no slices of.
        // Payload bytes belong to the caller's claimed cell or chunk (see the module doc).
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), self.base.add(off), data.len()) }
    }

    pub fn copy_out(&self, off: usize, len: usize) -> Vec<u8> {
        self.check(off, len, 1);
        let mut v = Vec::with_capacity(len);
        // SAFETY: the source range was checked to lie inside the mapping; `v` has capacity for
        // `len` bytes, all of which are initialised by the copy before `set_len`.
        unsafe {
            std::ptr::copy_nonoverlapping(self.base.add(off), v.as_mut_ptr(), len);
            v.set_len(len);
        }
        v
    }
}
