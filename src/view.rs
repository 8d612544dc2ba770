//! Typed access to words of a mapped segment by byte offset.

use crate::layout::Geometry;
use crate::sync::{AtomicU32, AtomicU64};

#[derive(Clone, Copy)]
pub struct View {
    base: *mut u8,
    pub geo: Geometry,
}

// SAFETY: every shared word is accessed through atomics; payload bytes are only touched by
// the process that holds the claim on them (see `protocol`).
unsafe impl Send for View {}
unsafe impl Sync for View {}

impl View {
    /// # Safety
    /// `base` must point to a mapping at least `geo.total_len()` bytes long that outlives the view.
    pub unsafe fn new(base: *mut u8, geo: Geometry) -> View {
        View { base, geo }
    }
    #[inline]
    pub fn a64(&self, off: usize) -> &AtomicU64 {
        debug_assert!(off % 8 == 0);
        // SAFETY: in-bounds, aligned offset of a word only ever accessed atomically.
        unsafe { &*(self.base.add(off) as *const AtomicU64) }
    }
    #[inline]
    pub fn a32(&self, off: usize) -> &AtomicU32 {
        debug_assert!(off % 4 == 0);
        // SAFETY: as above.
        unsafe { &*(self.base.add(off) as *const AtomicU32) }
    }
    #[inline]
    pub fn ptr(&self, off: usize) -> *mut u8 {
        // SAFETY: callers stay within the mapping.
        unsafe { self.base.add(off) }
    }
    #[inline]
    pub fn write_u32(&self, off: usize, v: u32) {
        unsafe { std::ptr::write_volatile(self.ptr(off) as *mut u32, v) }
    }
    #[inline]
    pub fn read_u32(&self, off: usize) -> u32 {
        unsafe { std::ptr::read_volatile(self.ptr(off) as *const u32) }
    }
    #[inline]
    pub fn write_u64(&self, off: usize, v: u64) {
        unsafe { std::ptr::write_volatile(self.ptr(off) as *mut u64, v) }
    }
    #[inline]
    pub fn read_u64(&self, off: usize) -> u64 {
        unsafe { std::ptr::read_volatile(self.ptr(off) as *const u64) }
    }
    pub fn copy_in(&self, off: usize, data: &[u8]) {
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), self.ptr(off), data.len()) }
    }
    pub fn copy_out(&self, off: usize, len: usize) -> Vec<u8> {
        let mut v = Vec::with_capacity(len);
        unsafe {
            std::ptr::copy_nonoverlapping(self.ptr(off), v.as_mut_ptr(), len);
            v.set_len(len);
        }
        v
    }
}
