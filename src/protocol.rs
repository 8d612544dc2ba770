//! The lock-free multi-producer multi-consumer protocol, independent of where the memory lives
//! (a shared-memory segment in production, plain heap cells under the loom model checker).
//!
//! Every cell has one state word (see `state`): `(seq, owner)`.
//! - `(pos, 0)`     free for the producer at position `pos`
//! - `(pos, p)`     claimed by producer `p`, which is writing the payload
//! - `(pos+1, 0)`   full, ready for the consumer at `pos`
//! - `(pos+1, c)`   claimed by consumer `c`, which is reading the payload
//! - `(pos+cap, 0)` released: free for the producer one lap later
//!
//! A claim is one CAS on the cell; the shared `enq`/`deq` counters are only hints that any
//! process may advance ("helping") once it sees the cell at that position claimed. So no
//! process ever waits on another one's progress, and a process that dies holds at most the
//! cells whose state carries its pid, which `heal` hands back.

use crate::state::{owner, pack, rel, seq};
use crate::sync::{AtomicU64, Ordering};

/// Where the ring's words live.
pub trait RingMem {
    /// Number of cells, a power of two.
    fn cap(&self) -> u64;
    fn enq(&self) -> &AtomicU64;
    fn deq(&self) -> &AtomicU64;
    fn state(&self, idx: usize) -> &AtomicU64;
}

/// A cell can be ahead of the shared counter only by the claims that have not advanced it yet
/// (fewer than the processes using the ring, which are far fewer than two laps). A cell further
/// ahead than this is damaged: following it would step the counter one position at a time
/// through up to 2^39 positions. The ring then reads as full (push) or empty (pop).
#[inline]
fn damaged_ahead<M: RingMem>(m: &M, d: i64) -> bool {
    d > 2 * m.cap() as i64
}

#[inline]
fn index<M: RingMem>(m: &M, pos: u64) -> usize {
    (pos & (m.cap() - 1)) as usize
}

/// Claims the next free cell for producer `me`: `Some((idx, pos))`, or None when full.
/// The caller writes the payload, then calls `publish`.
pub fn claim_push<M: RingMem>(m: &M, me: u32) -> Option<(usize, u64)> {
    loop {
        let pos = m.enq().load(Ordering::Acquire);
        let idx = index(m, pos);
        let cell = m.state(idx);
        let st = cell.load(Ordering::Acquire);
        let d = rel(seq(st), pos);
        if d == 0 {
            if owner(st) != 0 {
                // Another producer claimed this position: help it along.
                let _ = m.enq().compare_exchange(pos, pos + 1, Ordering::AcqRel, Ordering::Relaxed);
                continue;
            }
            if cell
                .compare_exchange(st, pack(pos, me), Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
            {
                let _ = m.enq().compare_exchange(pos, pos + 1, Ordering::AcqRel, Ordering::Relaxed);
                return Some((idx, pos));
            }
        } else if d < 0 {
            // The consumer of the previous lap has not released this cell yet.
            if m.enq().load(Ordering::Acquire) == pos {
                return None;
            }
        } else if damaged_ahead(m, d) {
            return None;
        } else {
            // The position was claimed already; our view of `enq` is stale.
            let _ = m.enq().compare_exchange(pos, pos + 1, Ordering::AcqRel, Ordering::Relaxed);
        }
    }
}

/// Makes a claimed, written cell visible to consumers.
#[inline]
pub fn publish<M: RingMem>(m: &M, idx: usize, pos: u64) {
    m.state(idx).store(pack(pos + 1, 0), Ordering::Release);
}

/// Claims, writes (via `write(idx, pos)`) and publishes one cell. False when the ring is full.
pub fn try_push<M: RingMem>(m: &M, me: u32, write: impl FnOnce(usize, u64)) -> bool {
    match claim_push(m, me) {
        Some((idx, pos)) => {
            write(idx, pos);
            publish(m, idx, pos);
            true
        }
        None => false,
    }
}

/// What a consumer's `read` callback found in a cell it claimed.
pub enum Read<T> {
    Item(T),
    /// A cell whose producer died mid-write: skip it.
    Tombstone,
}

/// Claims the oldest full cell for consumer `me`: `Some((idx, pos))`, or None when empty.
/// The caller reads the payload, then calls `release`.
pub fn claim_pop<M: RingMem>(m: &M, me: u32) -> Option<(usize, u64)> {
    loop {
        let pos = m.deq().load(Ordering::Acquire);
        let idx = index(m, pos);
        let cell = m.state(idx);
        let st = cell.load(Ordering::Acquire);
        let d = rel(seq(st), pos + 1);
        if d == 0 {
            if owner(st) != 0 {
                let _ = m.deq().compare_exchange(pos, pos + 1, Ordering::AcqRel, Ordering::Relaxed);
                continue;
            }
            if cell
                .compare_exchange(st, pack(pos + 1, me), Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
            {
                let _ = m.deq().compare_exchange(pos, pos + 1, Ordering::AcqRel, Ordering::Relaxed);
                return Some((idx, pos));
            }
        } else if d < 0 {
            // Empty, or the producer at `pos` is still writing.
            if m.deq().load(Ordering::Acquire) == pos {
                return None;
            }
        } else if damaged_ahead(m, d) {
            return None;
        } else {
            let _ = m.deq().compare_exchange(pos, pos + 1, Ordering::AcqRel, Ordering::Relaxed);
        }
    }
}

/// Frees a consumed cell for the producers of the next lap.
#[inline]
pub fn release<M: RingMem>(m: &M, idx: usize, pos: u64) {
    m.state(idx).store(pack(pos + m.cap(), 0), Ordering::Release);
}

/// Claims the oldest full cell, lets `read(idx, pos)` take the payload, releases the cell.
/// Skips tombstones. `None` when the ring is empty.
pub fn try_pop<M: RingMem, T>(m: &M, me: u32, mut read: impl FnMut(usize, u64) -> Read<T>) -> Option<T> {
    while let Some((idx, pos)) = claim_pop(m, me) {
        let got = read(idx, pos);
        release(m, idx, pos);
        if let Read::Item(t) = got {
            return Some(t);
        }
    }
    None
}

/// What `heal` found of a dead process's claims.
pub enum Claim {
    /// A cell the process had popped but not released: the item goes back to the caller.
    Consumed { idx: usize, pos: u64 },
    /// A cell the process was writing: it becomes a tombstone that consumers skip.
    Producing { idx: usize, pos: u64 },
}

/// Releases every cell claimed by `dead`. `on_claim` runs while the cell is still held, so it
/// can copy a consumed payload out or mark a half-written one as a tombstone.
/// Only call this for a process that is known to be dead.
pub fn heal<M: RingMem>(m: &M, dead: u32, mut on_claim: impl FnMut(Claim)) -> usize {
    let cap = m.cap();
    let mut n = 0;
    for idx in 0..cap as usize {
        let cell = m.state(idx);
        let st = cell.load(Ordering::Acquire);
        if owner(st) != dead {
            continue;
        }
        let s = seq(st);
        n += 1;
        if (s.wrapping_sub(1) & (cap - 1)) as usize == idx && (s & (cap - 1)) as usize != idx {
            let pos = s.wrapping_sub(1);
            on_claim(Claim::Consumed { idx, pos });
            let _ = m.deq().compare_exchange(pos, pos + 1, Ordering::AcqRel, Ordering::Relaxed);
            cell.store(pack(pos + cap, 0), Ordering::Release);
        } else {
            let pos = s;
            on_claim(Claim::Producing { idx, pos });
            let _ = m.enq().compare_exchange(pos, pos + 1, Ordering::AcqRel, Ordering::Relaxed);
            cell.store(pack(pos + 1, 0), Ordering::Release);
        }
    }
    n
}

/// Approximate number of full cells.
pub fn len<M: RingMem>(m: &M) -> u64 {
    let e = m.enq().load(Ordering::Acquire);
    let d = m.deq().load(Ordering::Acquire);
    e.saturating_sub(d).min(m.cap())
}
