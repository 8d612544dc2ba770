//! The node-local work queue: a bounded MPMC ring in one shared-memory segment, with blocking
//! push/pop (a short bounded poll, then a futex sleep; see `DEFAULT_SPIN`), a blob arena for
//! large messages, a lease table and `heal`.
//!
//! Everything read from the segment is checked before it is used as an offset or a length
//! (`View` bounds every access; blob references and inline lengths are validated here), so a
//! damaged segment gives `Error::Corrupt`, never an access outside the mapping.

use crate::arena::{Arena, Run};
use crate::error::{Error, Result};
use crate::futex;
use crate::wakeup::{Wait, WaitPair};
use crate::layout::*;
use crate::lease::{Held, Leases, NO_KEY};
use crate::protocol::{self, Claim, Read, RingMem};
use crate::segment::Segment;
use crate::state::{owner_id, pack};
use crate::sync::{AtomicU32, AtomicU64, Ordering};
use crate::view::{Shm, View};
use std::path::Path;
use std::time::{Duration, Instant};

pub use crate::lease::Lease;

/// Sizes of a new ring.
#[derive(Clone, Debug)]
pub struct RingOptions {
    /// Cells in the ring (rounded up to a power of two).
    pub capacity: u32,
    /// Bytes per cell; messages up to `slot_size - 16` bytes travel inline.
    pub slot_size: u32,
    /// Entries in the lease table (one per worker process that may attach).
    pub leases: u32,
    /// Bytes of the blob arena for larger messages.
    pub arena_bytes: usize,
    pub chunk_size: u32,
}

impl Default for RingOptions {
    fn default() -> Self {
        RingOptions { capacity: 1024, slot_size: 256, leases: 256, arena_bytes: 16 << 20, chunk_size: 4096 }
    }
}

/// What `heal` recovered from a dead process.
#[derive(Debug, Default)]
pub struct HealReport {
    /// Items it had popped but not finished taking: re-queue or report them.
    pub items: Vec<Vec<u8>>,
    /// Its lease entries: `key` names the item it was running when it died.
    pub leases: Vec<Lease>,
    /// Half-written cells turned into tombstones (it was producing).
    pub tombstones: usize,
    /// Blob chunks it held that were freed.
    pub chunks_freed: usize,
}

pub struct Ring {
    seg: Segment,
    v: View,
    /// Polls before sleeping in a blocking pop (process-local; see `set_spin`).
    spin: std::sync::atomic::AtomicU32,
}

/// Default polls before a blocking pop sleeps. About 1-2 us of CPU: on the 2-vCPU VMs we
/// measured, a futex wake-up costs ~18 us while a partner that answers within a microsecond
/// is caught by these polls (round trip 18 us -> 1.1 us). Longer spins steal the CPU a
/// 2-core machine needs for the peer, so this stays short.
pub const DEFAULT_SPIN: u32 = 200;

struct Mem<'a>(&'a View);

impl RingMem for Mem<'_> {
    #[inline]
    fn cap(&self) -> u64 {
        self.0.geo.cap as u64
    }
    #[inline]
    fn enq(&self) -> &AtomicU64 {
        self.0.a64(H_ENQ)
    }
    #[inline]
    fn deq(&self) -> &AtomicU64 {
        self.0.a64(H_DEQ)
    }
    #[inline]
    fn state(&self, idx: usize) -> &AtomicU64 {
        self.0.a64(cell_off(&self.0.geo, idx) + CELL_STATE)
    }
}

#[inline]
fn cell_off(geo: &Geometry, idx: usize) -> usize {
    geo.cells_off() + idx * geo.slot_size as usize
}

/// The blob reference stored in the cell at `off` (meaningful when its kind is KIND_BLOB).
#[inline]
fn cell_run(v: &View, off: usize) -> Run {
    Run::decode(&v.copy_out(off + CELL_PAYLOAD, 16))
}

/// The inline payload of the cell at `off`; its length word is checked against the cell size.
fn cell_inline(v: &View, off: usize) -> std::result::Result<Vec<u8>, String> {
    let len = v.read_u32(off + CELL_LEN) as usize;
    if len > v.geo.inline_max() {
        return Err(format!("inline item of {len} bytes in a {}-byte cell", v.geo.inline_max()));
    }
    Ok(v.copy_out(off + CELL_PAYLOAD, len))
}

fn me() -> u32 {
    owner_id(std::process::id())
}

enum Payload<'a> {
    Inline(&'a [u8]),
    Blob(Run),
}

impl Ring {
    /// Creates a ring in a new segment: a memfd when `path` is None, else a new file (e.g. under
    /// /dev/shm) that is unlinked when the creating process drops the ring.
    pub fn create(path: Option<&Path>, opts: &RingOptions) -> Result<Ring> {
        let geo = Geometry {
            cap: opts.capacity.max(2).next_power_of_two(),
            slot_size: opts.slot_size.div_ceil(64) * 64,
            leases: opts.leases.max(1),
            chunk_size: opts.chunk_size,
            chunks: crate::arena::chunks_for_bytes(opts.arena_bytes, opts.chunk_size.max(1)),
        };
        geo.validate().map_err(Error::BadOptions)?;
        let seg = Segment::create(path, geo.total_len())?;
        // SAFETY: the mapping is `seg.len()` bytes and `seg` lives as long as the ring, which
        // owns every copy of the view.
        let v = View::new(unsafe { Shm::new(seg.base(), seg.len()) }, geo);
        v.write_u32(H_VERSION, LAYOUT_VERSION);
        v.write_u32(H_CAP, geo.cap);
        v.write_u32(H_SLOT_SIZE, geo.slot_size);
        v.write_u32(H_LEASES, geo.leases);
        v.write_u32(H_CHUNK_SIZE, geo.chunk_size);
        v.write_u32(H_CHUNKS, geo.chunks);
        v.write_u64(H_TOTAL_LEN, geo.total_len() as u64);
        v.write_u32(H_CREATOR, std::process::id());
        for i in 0..geo.cap as usize {
            v.a64(cell_off(&geo, i) + CELL_STATE).store(pack(i as u64, 0), Ordering::Relaxed);
        }
        for s in 0..geo.leases as usize {
            let off = geo.leases_off() + s * geo.lease_len();
            v.a64(off + LEASE_KEY).store(NO_KEY, Ordering::Relaxed);
            v.write_u32(off + LEASE_HELD_LEN, HELD_NONE);
        }
        // The magic goes last: an attacher that sees it sees a fully initialised segment.
        v.a64(H_MAGIC).store(MAGIC, Ordering::Release);
        Ok(Ring { seg, v, spin: std::sync::atomic::AtomicU32::new(DEFAULT_SPIN) })
    }

    /// Maps an existing ring, checking that it has this build's layout and that its geometry
    /// fits the file.
    pub fn attach(path: &Path) -> Result<Ring> {
        let mut seg = Segment::attach(path)?;
        seg.keep();
        // SAFETY: the mapping is `seg.len()` bytes (at least a header, see Segment::attach) and
        // `seg` lives as long as the ring.
        let shm = unsafe { Shm::new(seg.base(), seg.len()) };
        let magic = shm.a64(H_MAGIC).load(Ordering::Acquire);
        if magic != MAGIC {
            return Err(Error::BadHeader(format!("{}: bad magic {magic:#x}", path.display())));
        }
        if shm.read_u32(H_VERSION) != LAYOUT_VERSION {
            return Err(Error::BadHeader(format!(
                "{}: layout version {} but this build reads version {LAYOUT_VERSION}",
                path.display(),
                shm.read_u32(H_VERSION)
            )));
        }
        let geo = Geometry {
            cap: shm.read_u32(H_CAP),
            slot_size: shm.read_u32(H_SLOT_SIZE),
            leases: shm.read_u32(H_LEASES),
            chunk_size: shm.read_u32(H_CHUNK_SIZE),
            chunks: shm.read_u32(H_CHUNKS),
        };
        geo.validate().map_err(|e| Error::BadHeader(format!("{}: {e}", path.display())))?;
        let total = shm.read_u64(H_TOTAL_LEN);
        if total != geo.total_len() as u64 || geo.total_len() > seg.len() {
            return Err(Error::BadHeader(format!(
                "{}: header says {total} bytes, geometry needs {}, file has {}",
                path.display(),
                geo.total_len(),
                seg.len()
            )));
        }
        let v = View::new(shm, geo);
        Ok(Ring { seg, v, spin: std::sync::atomic::AtomicU32::new(DEFAULT_SPIN) })
    }

    /// Sets how many times a blocking pop polls before it sleeps on the futex (0: never).
    pub fn set_spin(&self, polls: u32) {
        self.spin.store(polls, std::sync::atomic::Ordering::Relaxed);
    }

    pub fn path(&self) -> &Path {
        self.seg.path()
    }
    pub fn capacity(&self) -> u32 {
        self.v.geo.cap
    }
    pub fn inline_max(&self) -> usize {
        self.v.geo.inline_max()
    }
    /// Closes this process's descriptor of the segment (see `Segment::close_fd`).
    pub fn close_fd(&self) {
        self.seg.close_fd();
    }
    /// Unlinks a named segment now (open mappings stay valid).
    pub fn unlink(&mut self) {
        self.seg.unlink();
    }

    fn arena(&self) -> Arena {
        Arena::new(self.v)
    }
    fn leases_tbl(&self) -> Leases {
        Leases::new(self.v)
    }
    fn flags(&self) -> &AtomicU32 {
        self.v.a32(H_FLAGS)
    }

    // ---- push ----

    fn publish(&self, me: u32, p: &Payload) -> bool {
        let v = &self.v;
        let ok = protocol::try_push(&Mem(v), me, |idx, pos| {
            let off = cell_off(&v.geo, idx);
            match p {
                Payload::Inline(d) => {
                    v.write_u32(off + CELL_LEN, d.len() as u32);
                    v.write_u32(off + CELL_KIND, KIND_INLINE);
                    v.copy_in(off + CELL_PAYLOAD, d);
                }
                Payload::Blob(run) => {
                    v.write_u32(off + CELL_LEN, run.len.min(u32::MAX as u64) as u32);
                    v.write_u32(off + CELL_KIND, KIND_BLOB);
                    v.copy_in(off + CELL_PAYLOAD, &run.encode());
                    self.arena().publish(me, *run, pos);
                }
            }
        });
        if ok {
            self.notify(H_NOT_EMPTY_EPOCH, H_NOT_EMPTY_WAITERS);
        }
        ok
    }

    fn payload<'a>(&self, me: u32, data: &'a [u8]) -> Result<Payload<'a>> {
        if data.len() <= self.inline_max() {
            Ok(Payload::Inline(data))
        } else {
            Ok(Payload::Blob(self.arena().store(me, data)?))
        }
    }

    /// Frees the blob of a payload that was prepared but never published.
    fn discard(&self, me: u32, p: Option<Payload>) {
        if let Some(Payload::Blob(run)) = p {
            self.arena().release(me, run);
        }
    }

    /// Pushes without waiting: `Err(Full)` when no cell (or arena space) is free.
    pub fn try_push(&self, data: &[u8]) -> Result<()> {
        if self.is_closed() {
            return Err(Error::Closed);
        }
        let me = me();
        let p = self.payload(me, data)?;
        if self.publish(me, &p) {
            return Ok(());
        }
        self.discard(me, Some(p));
        Err(Error::Full)
    }

    /// Pushes, waiting up to `timeout` (None: forever) for space. Wakes on close.
    pub fn push(&self, data: &[u8], timeout: Option<Duration>) -> Result<()> {
        let me = me();
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut prepared: Option<Payload> = None;
        loop {
            if self.is_closed() {
                self.discard(me, prepared);
                return Err(Error::Closed);
            }
            if prepared.is_none() {
                match self.payload(me, data) {
                    Ok(p) => prepared = Some(p),
                    Err(Error::Full) => {}
                    Err(e) => return Err(e),
                }
            }
            let epoch = self.v.a32(H_NOT_FULL_EPOCH).load(Ordering::Acquire);
            if let Some(p) = &prepared {
                if self.publish(me, p) {
                    return Ok(());
                }
            }
            let res = self.wait_on(H_NOT_FULL_EPOCH, H_NOT_FULL_WAITERS, epoch, deadline, || {
                self.is_closed() || protocol::len(&Mem(&self.v)) < self.v.geo.cap as u64
            });
            if res == Wait::TimedOut {
                self.discard(me, prepared);
                return Err(Error::Timeout);
            }
        }
    }

    // ---- pop ----

    /// Pops without waiting. `Ok(None)`: empty for now. `Err(Closed)`: closed and drained (or
    /// aborted), nothing will ever come.
    pub fn try_pop(&self) -> Result<Option<Vec<u8>>> {
        self.pop_inner(None, true)
    }

    /// Pops up to `max` items without waiting, waking blocked pushers once for the whole batch
    /// instead of once per item (a consumer that cannot keep up would otherwise pay a wake-up
    /// system call per item while its producers wait for room). Returns the items popped and,
    /// if popping stopped on an error (a damaged cell, or closed and drained), that error; every
    /// freed cell is notified before returning, so no pusher's wake-up is lost (wakeup.rs).
    pub fn try_pop_batch(&self, max: usize) -> (Vec<Vec<u8>>, Option<Error>) {
        let mut items = Vec::new();
        let mut stopped = None;
        while items.len() < max {
            match self.pop_inner(None, false) {
                Ok(Some(item)) => items.push(item),
                Ok(None) => break,
                Err(e) => {
                    stopped = Some(e);
                    break;
                }
            }
        }
        if !items.is_empty() {
            let n = u32::try_from(items.len()).unwrap_or(u32::MAX);
            self.pair(H_NOT_FULL_EPOCH, H_NOT_FULL_WAITERS).notify_n(&futex::Kernel, n);
        }
        (items, stopped)
    }

    /// Like `try_pop`, but a copy of the item stays in lease entry `slot` until `ack(slot)`:
    /// if this process dies anywhere between the pop and the ack, `heal` hands the item back.
    pub fn try_pop_leased(&self, slot: u32) -> Result<Option<Vec<u8>>> {
        self.leases_tbl().check(slot)?;
        self.pop_inner(Some(slot), true)
    }

    /// Drops the copy held in lease entry `slot` (the item was dealt with).
    pub fn ack(&self, slot: u32) -> Result<()> {
        if let Some(run) = self.leases_tbl().ack(slot)? {
            self.arena().release(me(), run);
        }
        Ok(())
    }

    /// One pop; `notify`: wake a pusher waiting for room (false: the caller notifies for a batch).
    fn pop_inner(&self, lease: Option<u32>, notify: bool) -> Result<Option<Vec<u8>>> {
        if self.flags().load(Ordering::Acquire) & FLAG_ABORTED != 0 {
            return Err(Error::Closed);
        }
        let me = me();
        let v = &self.v;
        let arena = self.arena();
        let leases = self.leases_tbl();
        if let Some(slot) = lease {
            // An unacknowledged previous item is acknowledged implicitly by the next pop.
            self.ack(slot)?;
        }
        let mut taken = None;
        // A damaged cell is released like any other and reported as `Err` (the ring goes on).
        let got = protocol::try_pop(&Mem(v), me, |idx, pos| {
            let off = cell_off(&v.geo, idx);
            match v.read_u32(off + CELL_KIND) {
                KIND_TOMBSTONE => Read::Tombstone,
                KIND_BLOB => {
                    let run = cell_run(v, off);
                    let Some(data) = arena.take(me, run) else {
                        return Read::Item(Err(format!("cell {idx} refers to blob {run:?} outside the arena")));
                    };
                    match lease {
                        Some(slot) => leases.hold(slot, pos, &Held::Blob(run)),
                        None => taken = Some(run),
                    }
                    Read::Item(Ok(data))
                }
                _ => Read::Item(cell_inline(v, off).map_err(|why| format!("cell {idx}: {why}")).inspect(|data| {
                    if let Some(slot) = lease {
                        leases.hold(slot, pos, &Held::Inline(data.clone()));
                    }
                })),
            }
        });
        if let Some(run) = taken {
            arena.release(me, run);
        }
        let got = got.transpose().map_err(Error::Corrupt)?;
        match got {
            Some(item) => {
                if notify {
                    self.notify(H_NOT_FULL_EPOCH, H_NOT_FULL_WAITERS);
                }
                Ok(Some(item))
            }
            None if self.is_closed() && protocol::len(&Mem(v)) == 0 => Err(Error::Closed),
            None => Ok(None),
        }
    }

    /// Pops, waiting up to `timeout` (None: forever). `Ok(None)` on timeout, `Err(Closed)` when
    /// the ring is closed and empty.
    pub fn pop(&self, timeout: Option<Duration>) -> Result<Option<Vec<u8>>> {
        self.pop_wait(None, timeout)
    }

    /// Blocking form of `try_pop_leased`.
    pub fn pop_leased(&self, slot: u32, timeout: Option<Duration>) -> Result<Option<Vec<u8>>> {
        self.leases_tbl().check(slot)?;
        self.pop_wait(Some(slot), timeout)
    }

    fn pop_wait(&self, lease: Option<u32>, timeout: Option<Duration>) -> Result<Option<Vec<u8>>> {
        let deadline = timeout.map(|t| Instant::now() + t);
        loop {
            let epoch = self.v.a32(H_NOT_EMPTY_EPOCH).load(Ordering::Acquire);
            if let Some(item) = self.pop_inner(lease, true)? {
                return Ok(Some(item));
            }
            for _ in 0..self.spin.load(std::sync::atomic::Ordering::Relaxed) {
                std::hint::spin_loop();
                if protocol::len(&Mem(&self.v)) > 0 {
                    break;
                }
            }
            if let Some(item) = self.pop_inner(lease, true)? {
                return Ok(Some(item));
            }
            let res = self.wait_on(H_NOT_EMPTY_EPOCH, H_NOT_EMPTY_WAITERS, epoch, deadline, || {
                self.is_closed() || protocol::len(&Mem(&self.v)) > 0
            });
            if res == Wait::TimedOut {
                return Ok(None);
            }
        }
    }

    fn pair(&self, epoch_off: usize, waiters_off: usize) -> WaitPair<'_> {
        WaitPair { epoch: self.v.a32(epoch_off), waiters: self.v.a32(waiters_off) }
    }

    /// Sleeps unless `ready()` (see `wakeup`), up to `deadline`; TimedOut once it has passed.
    fn wait_on(
        &self,
        epoch_off: usize,
        waiters_off: usize,
        epoch: u32,
        deadline: Option<Instant>,
        ready: impl Fn() -> bool,
    ) -> Wait {
        let remaining = match deadline {
            None => None,
            Some(d) => match d.checked_duration_since(Instant::now()) {
                Some(r) if !r.is_zero() => Some(r),
                _ => return Wait::TimedOut,
            },
        };
        let r = self.pair(epoch_off, waiters_off).sleep_unless(&futex::Kernel, epoch, remaining, &ready);
        match (r, deadline) {
            (Wait::TimedOut, _) => Wait::TimedOut,
            (_, Some(d)) if Instant::now() >= d && !ready() => Wait::TimedOut,
            _ => Wait::Woken,
        }
    }

    fn notify(&self, epoch_off: usize, waiters_off: usize) {
        self.pair(epoch_off, waiters_off).notify(&futex::Kernel);
    }

    fn wake_all(&self) {
        self.pair(H_NOT_EMPTY_EPOCH, H_NOT_EMPTY_WAITERS).wake_all(&futex::Kernel);
        self.pair(H_NOT_FULL_EPOCH, H_NOT_FULL_WAITERS).wake_all(&futex::Kernel);
    }

    // ---- lifecycle ----

    /// No more pushes; consumers drain what is queued, then get `Closed`. Wakes every waiter.
    pub fn close(&self) {
        self.flags().fetch_or(FLAG_CLOSED, Ordering::SeqCst);
        self.wake_all();
    }
    /// Like close, but consumers stop at once even if items remain (used for -x / Ctrl-C).
    pub fn abort(&self) {
        self.flags().fetch_or(FLAG_CLOSED | FLAG_ABORTED, Ordering::SeqCst);
        self.wake_all();
    }
    pub fn is_closed(&self) -> bool {
        self.flags().load(Ordering::Acquire) & FLAG_CLOSED != 0
    }
    pub fn is_aborted(&self) -> bool {
        self.flags().load(Ordering::Acquire) & FLAG_ABORTED != 0
    }
    /// Items queued right now (approximate under concurrency).
    pub fn len(&self) -> usize {
        protocol::len(&Mem(&self.v)) as usize
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Processes blocked in `pop` right now (diagnostics and tests).
    pub fn pop_waiters(&self) -> u32 {
        self.v.a32(H_NOT_EMPTY_WAITERS).load(Ordering::SeqCst)
    }
    /// Blob chunks in use (diagnostics; 0 when every large message was consumed).
    pub fn arena_used_chunks(&self) -> usize {
        self.arena().used_chunks()
    }
    /// A free 64-bit word in the header for the layers above (0..USER_WORDS).
    pub fn user_word(&self, i: usize) -> &AtomicU64 {
        assert!(i < USER_WORDS);
        self.v.a64(H_USER + i * 8)
    }

    // ---- leases ----

    /// Takes a lease entry for the calling process.
    pub fn lease_claim(&self) -> Result<u32> {
        self.leases_tbl().claim(me())
    }
    /// The caller now runs item `key` (None: nothing).
    pub fn lease_set(&self, slot: u32, key: Option<u64>) -> Result<()> {
        self.leases_tbl().set(slot, key.unwrap_or(NO_KEY))
    }
    pub fn lease_release(&self, slot: u32) -> Result<()> {
        self.leases_tbl().release(slot)
    }
    pub fn leases(&self) -> Vec<Lease> {
        self.leases_tbl().all()
    }

    // ---- crash recovery ----

    /// Hands back everything process `dead` held: cells it had popped (their items are
    /// returned), cells it was writing (skipped as tombstones), blob chunks, lease entries.
    /// Call it only once `dead` is known dead (reaped), before its pid can be reused by a
    /// process that attaches to this ring.
    pub fn heal(&self, dead: u32) -> HealReport {
        let dead = owner_id(dead);
        let v = &self.v;
        let arena = self.arena();
        let mut rep = HealReport::default();
        // Leases first: an item both in a claimed cell and in the lease (death between the
        // two) must be handed back once.
        let (leases, held) = self.leases_tbl().heal(dead);
        rep.leases = leases;
        let mut held_pos = Vec::new();
        for (pos, item) in held {
            held_pos.push(pos);
            match item {
                Held::Inline(d) => rep.items.push(d),
                Held::Blob(run) => {
                    if arena.owned_by_cell(run, pos, dead) {
                        rep.items.extend(arena.read(run));
                        arena.force_free(run);
                    }
                }
            }
        }
        protocol::heal(&Mem(v), dead, |claim| match claim {
            Claim::Consumed { idx, pos } => {
                let off = cell_off(&v.geo, idx);
                let dup = held_pos.contains(&pos);
                match v.read_u32(off + CELL_KIND) {
                    KIND_TOMBSTONE => {}
                    KIND_BLOB => {
                        let run = cell_run(v, off);
                        if arena.owned_by_cell(run, pos, dead) {
                            if !dup {
                                rep.items.extend(arena.read(run));
                            }
                            arena.force_free(run);
                        }
                    }
                    _ if dup => {}
                    // A damaged length: nothing trustworthy to hand back.
                    _ => rep.items.extend(cell_inline(v, off).ok()),
                }
            }
            Claim::Producing { idx, pos } => {
                let off = cell_off(&v.geo, idx);
                if v.read_u32(off + CELL_KIND) == KIND_BLOB {
                    let run = cell_run(v, off);
                    if arena.owned_by_cell(run, pos, dead) {
                        arena.force_free(run);
                    }
                }
                v.write_u32(off + CELL_KIND, KIND_TOMBSTONE);
                rep.tombstones += 1;
            }
        });
        rep.chunks_freed = arena.heal(dead);
        self.wake_all();
        rep
    }
}
