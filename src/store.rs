//! The node's fixture store: named, immutable values (pickled global and node fixture values)
//! in one shared-memory segment that every worker of the node maps. Written only by the
//! node's coordinating process (main or bridge), read by any worker without a round trip.
//!
//! ```text
//! [header 4 KiB][entries: n * 256 B][values, bump-allocated]
//! ```
//! A memfd sized sparsely: pages cost memory only once a value is written, so the store can
//! be created large (default 4 GiB of address space) without cost.

use crate::error::{Error, Result};
use crate::segment::Segment;
use crate::sync::{AtomicU32, AtomicU64, Ordering};
use std::path::Path;

const MAGIC: u64 = u64::from_le_bytes(*b"PTMSTOR1");
const HEADER: usize = 4096;
const ENTRY: usize = 256;
const NAME_MAX: usize = ENTRY - 32;
// Header words.
const H_MAGIC: usize = 0;
const H_ENTRIES: usize = 8;
const H_TOTAL: usize = 16;
const H_USED_ENTRIES: usize = 64;
const H_NEXT_FREE: usize = 128;
// Entry fields.
const E_STATE: usize = 0; // 0 empty, 1 ready
const E_NAME_LEN: usize = 4;
const E_OFF: usize = 8;
const E_LEN: usize = 16;
const E_NAME: usize = 32;

pub struct Store {
    seg: Segment,
    entries: usize,
}

impl Store {
    /// Creates a store for up to `entries` values totalling at most `bytes`.
    pub fn create(entries: usize, bytes: usize) -> Result<Store> {
        let values_off = HEADER + entries * ENTRY;
        let total = values_off + bytes;
        let seg = Segment::create(None, total)?;
        let s = Store { seg, entries };
        s.word64(H_ENTRIES).store(entries as u64, Ordering::Relaxed);
        s.word64(H_TOTAL).store(total as u64, Ordering::Relaxed);
        s.word64(H_NEXT_FREE).store(values_off as u64, Ordering::Relaxed);
        s.word64(H_MAGIC).store(MAGIC, Ordering::Release);
        Ok(s)
    }

    pub fn attach(path: &Path) -> Result<Store> {
        let mut seg = Segment::attach(path)?;
        seg.keep();
        let magic = unsafe { (*(seg.base() as *const AtomicU64)).load(Ordering::Acquire) };
        if magic != MAGIC {
            return Err(Error::BadHeader(format!("{}: not a fixture store", path.display())));
        }
        let entries = unsafe { (*(seg.base().add(H_ENTRIES) as *const AtomicU64)).load(Ordering::Acquire) } as usize;
        Ok(Store { seg, entries })
    }

    pub fn path(&self) -> &Path {
        self.seg.path()
    }

    fn word64(&self, off: usize) -> &AtomicU64 {
        unsafe { &*(self.seg.base().add(off) as *const AtomicU64) }
    }
    fn word32(&self, off: usize) -> &AtomicU32 {
        unsafe { &*(self.seg.base().add(off) as *const AtomicU32) }
    }
    fn entry(&self, i: usize) -> usize {
        HEADER + i * ENTRY
    }

    /// Publishes `value` under `name` (one writer per store). A name may be published once.
    pub fn put(&self, name: &str, value: &[u8]) -> Result<()> {
        if name.len() > NAME_MAX {
            return Err(Error::BadHeader(format!("fixture store key longer than {NAME_MAX} bytes: {name}")));
        }
        if self.find(name).is_some() {
            return Err(Error::BadHeader(format!("fixture store key published twice: {name}")));
        }
        let i = self.word64(H_USED_ENTRIES).load(Ordering::Acquire) as usize;
        if i >= self.entries {
            return Err(Error::Full);
        }
        let off = self.word64(H_NEXT_FREE).load(Ordering::Acquire) as usize;
        let end = (off + value.len()).div_ceil(64) * 64;
        if end > self.seg.len() {
            return Err(Error::TooLarge { len: value.len(), max: self.seg.len().saturating_sub(off) });
        }
        let base = self.seg.base();
        unsafe {
            std::ptr::copy_nonoverlapping(value.as_ptr(), base.add(off), value.len());
            let e = self.entry(i);
            std::ptr::copy_nonoverlapping(name.as_ptr(), base.add(e + E_NAME), name.len());
            *(base.add(e + E_NAME_LEN) as *mut u32) = name.len() as u32;
            *(base.add(e + E_OFF) as *mut u64) = off as u64;
            *(base.add(e + E_LEN) as *mut u64) = value.len() as u64;
        }
        self.word64(H_NEXT_FREE).store(end as u64, Ordering::Release);
        self.word32(self.entry(i) + E_STATE).store(1, Ordering::Release);
        self.word64(H_USED_ENTRIES).store(i as u64 + 1, Ordering::Release);
        Ok(())
    }

    fn find(&self, name: &str) -> Option<(usize, usize)> {
        let n = (self.word64(H_USED_ENTRIES).load(Ordering::Acquire) as usize).min(self.entries);
        let base = self.seg.base();
        (0..n).find_map(|i| {
            let e = self.entry(i);
            if self.word32(e + E_STATE).load(Ordering::Acquire) != 1 {
                return None;
            }
            unsafe {
                let len = *(base.add(e + E_NAME_LEN) as *const u32) as usize;
                let key = std::slice::from_raw_parts(base.add(e + E_NAME), len.min(NAME_MAX));
                (key == name.as_bytes())
                    .then(|| (*(base.add(e + E_OFF) as *const u64) as usize, *(base.add(e + E_LEN) as *const u64) as usize))
            }
        })
    }

    /// The value published under `name`, as a slice of the shared mapping (no copy).
    pub fn get(&self, name: &str) -> Option<&[u8]> {
        self.find(name).map(|(off, len)| unsafe { std::slice::from_raw_parts(self.seg.base().add(off), len) })
    }

    pub fn names(&self) -> Vec<String> {
        let n = (self.word64(H_USED_ENTRIES).load(Ordering::Acquire) as usize).min(self.entries);
        let base = self.seg.base();
        (0..n)
            .map(|i| unsafe {
                let e = self.entry(i);
                let len = *(base.add(e + E_NAME_LEN) as *const u32) as usize;
                String::from_utf8_lossy(std::slice::from_raw_parts(base.add(e + E_NAME), len.min(NAME_MAX))).into_owned()
            })
            .collect()
    }
}
