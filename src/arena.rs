//! Side store for messages too large for a ring cell (a pickled 5 MB fixture value, a long
//! traceback). The arena is a run of fixed-size chunks inside the same segment; a table holds
//! one tag word per chunk saying who holds it:
//!
//! - `FREE`            nobody
//! - `ALLOC(pid)`      a producer is filling it (not yet referenced by a ring cell)
//! - `IN_RING`         referenced by a published ring cell
//! - `TAKEN(pid)`      a consumer popped the cell and is copying the data out
//!
//! Every transition is one atomic store or CAS per chunk, so `heal(pid)` can free exactly what
//! a dead process held, and a blob is reclaimed as soon as its consumer has copied it.

use crate::error::{Error, Result};
use crate::layout::{PAGE, RUN_HEADER};
use crate::sync::Ordering;
use crate::view::View;

pub const FREE: u64 = 0;
const K_ALLOC: u64 = 1;
const K_IN_RING: u64 = 2;
const K_TAKEN: u64 = 3;

fn tag(kind: u64, pid: u32, head: u32) -> u64 {
    (kind << 56) | ((pid as u64 & 0xFF_FFFF) << 32) | head as u64
}
fn kind(t: u64) -> u64 {
    t >> 56
}
fn tag_pid(t: u64) -> u32 {
    ((t >> 32) & 0xFF_FFFF) as u32
}

/// A blob: `n` chunks from `head`, holding `len` bytes after the run header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Run {
    pub head: u32,
    pub n: u32,
    pub len: u64,
}

impl Run {
    pub fn encode(&self) -> [u8; 16] {
        let mut b = [0u8; 16];
        b[0..4].copy_from_slice(&self.head.to_le_bytes());
        b[4..8].copy_from_slice(&self.n.to_le_bytes());
        b[8..16].copy_from_slice(&self.len.to_le_bytes());
        b
    }
    pub fn decode(b: &[u8]) -> Run {
        Run {
            head: u32::from_le_bytes(b[0..4].try_into().unwrap()),
            n: u32::from_le_bytes(b[4..8].try_into().unwrap()),
            len: u64::from_le_bytes(b[8..16].try_into().unwrap()),
        }
    }
}

pub struct Arena {
    v: View,
}

impl Arena {
    pub fn new(v: View) -> Arena {
        Arena { v }
    }
    fn slot(&self, i: u32) -> &crate::sync::AtomicU64 {
        self.v.a64(self.v.geo.table_off() + i as usize * 8)
    }
    fn chunk_off(&self, i: u32) -> usize {
        self.v.geo.arena_off() + i as usize * self.v.geo.chunk_size as usize
    }
    pub fn max_len(&self) -> usize {
        (self.v.geo.chunks as usize * self.v.geo.chunk_size as usize).saturating_sub(RUN_HEADER)
    }
    /// Does `run` (read from shared memory, so possibly damaged) describe chunks inside the
    /// arena with room for its length? Every method that follows a run checks this first.
    pub fn valid(&self, run: Run) -> bool {
        let g = &self.v.geo;
        run.n >= 1
            && run.head.checked_add(run.n).is_some_and(|end| end <= g.chunks)
            && run.len.checked_add(RUN_HEADER as u64).is_some_and(|l| l <= run.n as u64 * g.chunk_size as u64)
    }
    fn chunks_for(&self, len: usize) -> u32 {
        (len + RUN_HEADER).div_ceil(self.v.geo.chunk_size as usize) as u32
    }

    /// Reserves a contiguous run for `data` under `me` and copies it in.
    /// `Err(Full)` when no run is free right now, `Err(TooLarge)` when none ever could be.
    pub fn store(&self, me: u32, data: &[u8]) -> Result<Run> {
        let count = self.v.geo.chunks;
        let n = self.chunks_for(data.len());
        if data.is_empty() || n > count {
            return Err(Error::TooLarge { len: data.len(), max: self.max_len() });
        }
        let hint = self.v.a64(crate::layout::H_ARENA_HINT);
        let mut start = (hint.load(Ordering::Relaxed) % count as u64) as u32;
        let mut scanned = 0u32;
        while scanned < count {
            if start + n > count {
                scanned += count - start;
                start = 0;
                continue;
            }
            match self.claim(me, start, n) {
                Ok(()) => {
                    hint.store((start + n) as u64, Ordering::Relaxed);
                    let run = Run { head: start, n, len: data.len() as u64 };
                    let off = self.chunk_off(start);
                    self.v.write_u64(off, run.len);
                    self.v.write_u64(off + 8, n as u64);
                    self.v.copy_in(off + RUN_HEADER, data);
                    return Ok(run);
                }
                Err(busy) => {
                    scanned += busy - start + 1;
                    start = busy + 1;
                }
            }
        }
        Err(Error::Full)
    }

    /// Claims chunks `head..head+n`; on conflict releases what it took and returns the busy index.
    fn claim(&self, me: u32, head: u32, n: u32) -> std::result::Result<(), u32> {
        let t = tag(K_ALLOC, me, head);
        for i in head..head + n {
            if self.slot(i).compare_exchange(FREE, t, Ordering::AcqRel, Ordering::Relaxed).is_err() {
                for j in head..i {
                    self.slot(j).store(FREE, Ordering::Release);
                }
                return Err(i);
            }
        }
        Ok(())
    }

    /// The producer references the run from the cell at ring position `pos`.
    pub fn publish(&self, me: u32, run: Run, pos: u64) {
        self.v.write_u64(self.chunk_off(run.head) + 16, pos);
        let from = tag(K_ALLOC, me, run.head);
        let to = tag(K_IN_RING, 0, run.head);
        for i in run.head..run.head + run.n {
            let _ = self.slot(i).compare_exchange(from, to, Ordering::AcqRel, Ordering::Relaxed);
        }
    }

    /// The consumer at `pos` copies the blob out; the chunks stay `TAKEN(me)` until `release`.
    /// None when the reference is damaged.
    pub fn take(&self, me: u32, run: Run) -> Option<Vec<u8>> {
        if !self.valid(run) {
            return None;
        }
        let t = tag(K_TAKEN, me, run.head);
        for i in run.head..run.head + run.n {
            self.slot(i).store(t, Ordering::Release);
        }
        Some(self.v.copy_out(self.chunk_off(run.head) + RUN_HEADER, run.len as usize))
    }

    /// Frees a run held as `TAKEN(me)` or `ALLOC(me)`.
    pub fn release(&self, me: u32, run: Run) {
        if !self.valid(run) {
            return;
        }
        for k in [K_TAKEN, K_ALLOC] {
            let t = tag(k, me, run.head);
            for i in run.head..run.head + run.n {
                let _ = self.slot(i).compare_exchange(t, FREE, Ordering::AcqRel, Ordering::Relaxed);
            }
        }
    }

    /// Is `run` (read from a cell at `pos` during healing) really the blob of that cell, still
    /// held in the ring or by `dead`? A stale reference from an older lap fails this test.
    pub fn owned_by_cell(&self, run: Run, pos: u64, dead: u32) -> bool {
        if !self.valid(run) {
            return false;
        }
        let t = self.slot(run.head).load(Ordering::Acquire);
        let held = match kind(t) {
            K_IN_RING => true,
            K_ALLOC | K_TAKEN => tag_pid(t) == dead,
            _ => false,
        };
        held && (t & 0xFFFF_FFFF) as u32 == run.head
            && self.v.read_u64(self.chunk_off(run.head) + 16) == pos
            && self.v.read_u64(self.chunk_off(run.head)) == run.len
    }

    /// Copies a blob out during healing (the cell that references it is held by the healer).
    pub fn read(&self, run: Run) -> Option<Vec<u8>> {
        self.valid(run).then(|| self.v.copy_out(self.chunk_off(run.head) + RUN_HEADER, run.len as usize))
    }

    /// Frees a run regardless of its holder (the healer owns it now).
    pub fn force_free(&self, run: Run) {
        if !self.valid(run) {
            return;
        }
        for i in run.head..run.head + run.n {
            self.slot(i).store(FREE, Ordering::Release);
        }
    }

    /// Frees every chunk a dead process was filling or copying out. Returns how many.
    pub fn heal(&self, dead: u32) -> usize {
        let mut freed = 0;
        for i in 0..self.v.geo.chunks {
            let t = self.slot(i).load(Ordering::Acquire);
            if matches!(kind(t), K_ALLOC | K_TAKEN)
                && tag_pid(t) == dead
                && self.slot(i).compare_exchange(t, FREE, Ordering::AcqRel, Ordering::Relaxed).is_ok()
            {
                freed += 1;
            }
        }
        freed
    }

    /// Chunks not free (for tests and diagnostics).
    pub fn used_chunks(&self) -> usize {
        (0..self.v.geo.chunks).filter(|&i| self.slot(i).load(Ordering::Acquire) != FREE).count()
    }
}

/// Default arena geometry for a requested byte size.
pub fn chunks_for_bytes(bytes: usize, chunk_size: u32) -> u32 {
    let bytes = bytes.div_ceil(PAGE) * PAGE;
    (bytes / chunk_size as usize) as u32
}
