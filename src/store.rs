//! The node's fixture store: named, immutable values (pickled global and node fixture values)
//! in one shared-memory segment that every worker of the node maps.
//!
//! ```text
//! [header 4 KiB][entries: n * 256 B][values, bump-allocated]
//! ```
//! A memfd sized sparsely: pages cost memory only once a value is written, so the store can
//! be created large (default 4 GiB of address space) without cost.
//!
//! Writers: any number of processes may `put` at once (on a worker node the node's supervisor
//! publishes node fixtures while the bridge publishes global ones). They take turns on a
//! writer lock word in the header that holds the writer's pid; a writer that died holding it
//! is detected (its pid is gone) and the lock taken over; a live holder that keeps it longer
//! than a put can take (a damaged word naming some other live process) is an error after
//! `DEFAULT_WRITER_WAIT`. Readers never lock: an entry becomes visible with one release store of
//! its state word, after its bytes are written.
//!
//! Nothing read from the segment is trusted: `attach` checks the header against the file, and
//! every entry's name length, offset and length are checked before they are followed.

use crate::error::{Error, Result};
use crate::segment::Segment;
use crate::sync::{AtomicU32, Ordering};
use crate::view::Shm;
use std::path::Path;

const MAGIC: u64 = u64::from_le_bytes(*b"PTMSTOR2");
const HEADER: usize = 4096;
const ENTRY: usize = 256;
const NAME_MAX: usize = ENTRY - 32;
// Header words.
const H_MAGIC: usize = 0;
const H_ENTRIES: usize = 8;
const H_TOTAL: usize = 16;
const H_USED_ENTRIES: usize = 64;
const H_NEXT_FREE: usize = 128;
const H_WRITER: usize = 192;
// Entry fields.
const E_STATE: usize = 0; // 0 empty, 1 ready
const E_NAME_LEN: usize = 4;
const E_OFF: usize = 8;
const E_LEN: usize = 16;
const E_NAME: usize = 32;

/// How long `put` waits for another live process's writer lock before it gives up.
pub const DEFAULT_WRITER_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

pub struct Store {
    // Field order: `mem` points into `seg`'s mapping, so it must not outlive it (it is Copy and
    // never handed out).
    mem: Shm,
    seg: Segment,
    entries: usize,
    values_off: usize,
    writer_wait: std::time::Duration,
}

fn values_off(entries: usize) -> Option<usize> {
    entries.checked_mul(ENTRY)?.checked_add(HEADER)
}

impl Store {
    /// Creates a store for up to `entries` values totalling at most `bytes`.
    pub fn create(entries: usize, bytes: usize) -> Result<Store> {
        let too_big = || Error::BadOptions(format!("a fixture store of {entries} entries and {bytes} bytes is too large"));
        let values_off = values_off(entries).ok_or_else(too_big)?;
        let total = values_off.checked_add(bytes).ok_or_else(too_big)?;
        let seg = Segment::create(None, total)?;
        // SAFETY: the mapping is `seg.len()` bytes and `seg` is kept in the store beside `mem`.
        let mem = unsafe { Shm::new(seg.base(), seg.len()) };
        let s = Store { mem, seg, entries, values_off, writer_wait: DEFAULT_WRITER_WAIT };
        s.mem.a64(H_ENTRIES).store(entries as u64, Ordering::Relaxed);
        s.mem.a64(H_TOTAL).store(total as u64, Ordering::Relaxed);
        s.mem.a64(H_NEXT_FREE).store(values_off as u64, Ordering::Relaxed);
        s.mem.a64(H_MAGIC).store(MAGIC, Ordering::Release);
        Ok(s)
    }

    /// Maps an existing store, checking its header against the file.
    pub fn attach(path: &Path) -> Result<Store> {
        let mut seg = Segment::attach(path)?;
        seg.keep();
        // SAFETY: as in `create` (Segment::attach guarantees at least a header's bytes).
        let mem = unsafe { Shm::new(seg.base(), seg.len()) };
        let bad = |why: String| Error::BadHeader(format!("{}: {why}", path.display()));
        if mem.a64(H_MAGIC).load(Ordering::Acquire) != MAGIC {
            return Err(bad("not a fixture store".into()));
        }
        let entries = mem.a64(H_ENTRIES).load(Ordering::Acquire);
        let total = mem.a64(H_TOTAL).load(Ordering::Acquire);
        let values_off = usize::try_from(entries).ok().and_then(values_off);
        let Some(values_off) = values_off.filter(|&v| v as u64 <= total && total <= seg.len() as u64) else {
            return Err(bad(format!("{entries} entries and {total} bytes do not fit a {}-byte file", seg.len())));
        };
        Ok(Store { mem, seg, entries: entries as usize, values_off, writer_wait: DEFAULT_WRITER_WAIT })
    }

    pub fn path(&self) -> &Path {
        self.seg.path()
    }

    /// How long `put` waits for another live writer (tests and the fuzzer shorten it).
    pub fn set_writer_wait(&mut self, wait: std::time::Duration) {
        self.writer_wait = wait;
    }

    /// Closes this process's descriptor of the segment (see `Segment::close_fd`).
    pub fn close_fd(&self) {
        self.seg.close_fd();
    }

    fn entry(&self, i: usize) -> usize {
        HEADER + i * ENTRY
    }

    fn used(&self) -> usize {
        (self.mem.a64(H_USED_ENTRIES).load(Ordering::Acquire) as usize).min(self.entries)
    }

    /// Publishes `value` under `name`. A name may be published once.
    pub fn put(&self, name: &str, value: &[u8]) -> Result<()> {
        if name.len() > NAME_MAX {
            return Err(Error::KeyTooLong { len: name.len(), max: NAME_MAX });
        }
        let _writer = WriterLock::take(self.mem.a32(H_WRITER), self.writer_wait)?;
        if self.find(name).is_some() {
            return Err(Error::DuplicateKey(name.to_string()));
        }
        let i = self.used();
        if i >= self.entries {
            return Err(Error::Full);
        }
        let total = self.seg.len();
        let off = (self.mem.a64(H_NEXT_FREE).load(Ordering::Acquire) as usize).clamp(self.values_off, total);
        let end = off.checked_add(value.len()).map(|e| e.div_ceil(64) * 64).filter(|&e| e <= total);
        let Some(end) = end else {
            return Err(Error::TooLarge { len: value.len(), max: total - off });
        };
        let e = self.entry(i);
        self.mem.copy_in(off, value);
        self.mem.copy_in(e + E_NAME, name.as_bytes());
        self.mem.a32(e + E_NAME_LEN).store(name.len() as u32, Ordering::Relaxed);
        self.mem.a64(e + E_OFF).store(off as u64, Ordering::Relaxed);
        self.mem.a64(e + E_LEN).store(value.len() as u64, Ordering::Relaxed);
        self.mem.a64(H_NEXT_FREE).store(end as u64, Ordering::Release);
        self.mem.a32(e + E_STATE).store(1, Ordering::Release);
        self.mem.a64(H_USED_ENTRIES).store(i as u64 + 1, Ordering::Release);
        Ok(())
    }

    /// Entry `i`'s (name, value range), or None if it is not ready or its fields are damaged.
    fn read_entry(&self, i: usize) -> Option<(Vec<u8>, usize, usize)> {
        let e = self.entry(i);
        if self.mem.a32(e + E_STATE).load(Ordering::Acquire) != 1 {
            return None;
        }
        let name_len = self.mem.a32(e + E_NAME_LEN).load(Ordering::Relaxed) as usize;
        let off = self.mem.a64(e + E_OFF).load(Ordering::Relaxed) as usize;
        let len = self.mem.a64(e + E_LEN).load(Ordering::Relaxed) as usize;
        let inside = name_len <= NAME_MAX && off >= self.values_off && self.mem.fits(off, len);
        inside.then(|| (self.mem.copy_out(e + E_NAME, name_len), off, len))
    }

    fn find(&self, name: &str) -> Option<(usize, usize)> {
        (0..self.used()).find_map(|i| {
            let (key, off, len) = self.read_entry(i)?;
            (key == name.as_bytes()).then_some((off, len))
        })
    }

    /// The value published under `name`, as a slice of the shared mapping (no copy).
    pub fn get(&self, name: &str) -> Option<&[u8]> {
        let (off, len) = self.find(name)?;
        // SAFETY: `read_entry` checked that [off, off+len) lies inside the mapping, which lives
        // as long as `&self`. Published values are immutable: writers only append past
        // H_NEXT_FREE, which had moved past this value before its entry became ready.
        Some(unsafe { std::slice::from_raw_parts(self.seg.base().add(off), len) })
    }

    pub fn names(&self) -> Vec<String> {
        (0..self.used())
            .filter_map(|i| self.read_entry(i))
            .map(|(key, _, _)| String::from_utf8_lossy(&key).into_owned())
            .collect()
    }
}

/// The store's writer lock: a header word holding the writing process's pid (0: free).
struct WriterLock<'a> {
    word: &'a AtomicU32,
    me: u32,
}

impl<'a> WriterLock<'a> {
    fn take(word: &'a AtomicU32, wait: std::time::Duration) -> Result<WriterLock<'a>> {
        let me = std::process::id();
        let deadline = std::time::Instant::now() + wait;
        let mut spins = 0u32;
        loop {
            let holder = word.load(Ordering::Acquire);
            let free = holder == 0 || !process_alive(holder);
            if free && word.compare_exchange(holder, me, Ordering::AcqRel, Ordering::Relaxed).is_ok() {
                return Ok(WriterLock { word, me });
            }
            if std::time::Instant::now() > deadline {
                return Err(Error::Corrupt(format!(
                    "the fixture store's writer lock has been held by process {holder} for {} s",
                    wait.as_secs_f64()
                )));
            }
            // Writes are rare (a fixture value each) and short: back off, do not sleep on it.
            spins += 1;
            if spins < 64 {
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
    }
}

impl Drop for WriterLock<'_> {
    fn drop(&mut self) {
        let _ = self.word.compare_exchange(self.me, 0, Ordering::AcqRel, Ordering::Relaxed);
    }
}

/// Is there a process with this pid (in our pid namespace, as every process of a node is)?
fn process_alive(pid: u32) -> bool {
    let Ok(pid) = i32::try_from(pid) else { return false };
    !matches!(nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None), Err(nix::errno::Errno::ESRCH))
}
