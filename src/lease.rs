//! The lease table: one entry per live worker saying which work item it is running and since
//! when, plus a copy of the item it popped and has not acknowledged yet. The copy is written
//! while the worker still holds the ring cell, so whatever instruction the worker dies at, the
//! item is either still in its claimed cell or in its lease, and `heal` hands it back.

use crate::arena::Run;
use crate::error::{Error, Result};
use crate::layout::*;
use crate::sync::Ordering;
use crate::view::View;

/// "Not running anything."
pub const NO_KEY: u64 = u64::MAX;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lease {
    pub slot: u32,
    pub pid: u32,
    /// The item being run, or None between items.
    pub key: Option<u64>,
    /// CLOCK_MONOTONIC nanoseconds when `key` was set (comparable across processes).
    pub started_ns: u64,
}

/// An item a worker popped and has not acknowledged.
pub enum Held {
    Inline(Vec<u8>),
    Blob(Run),
}

pub struct Leases {
    v: View,
}

pub fn monotonic_ns() -> u64 {
    let ts = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC).expect("CLOCK_MONOTONIC");
    ts.tv_sec() as u64 * 1_000_000_000 + ts.tv_nsec() as u64
}

impl Leases {
    pub fn new(v: View) -> Leases {
        Leases { v }
    }
    fn off(&self, slot: u32) -> usize {
        self.v.geo.leases_off() + slot as usize * self.v.geo.lease_len()
    }
    /// Slot numbers come from callers (Python, other processes): every public entry point
    /// that takes one checks it here.
    pub fn check(&self, slot: u32) -> Result<()> {
        if slot < self.v.geo.leases {
            Ok(())
        } else {
            Err(Error::BadSlot { slot, slots: self.v.geo.leases })
        }
    }

    /// Takes a free entry for process `pid` (one CAS, so two racing workers never share one).
    pub fn claim(&self, pid: u32) -> Result<u32> {
        for slot in 0..self.v.geo.leases {
            let off = self.off(slot);
            let word = self.v.a32(off + LEASE_PID);
            if word.load(Ordering::Acquire) == 0
                && word.compare_exchange(0, pid, Ordering::AcqRel, Ordering::Relaxed).is_ok()
            {
                self.v.write_u32(off + LEASE_HELD_LEN, HELD_NONE);
                self.v.a64(off + LEASE_KEY).store(NO_KEY, Ordering::Release);
                self.v.a64(off + LEASE_STARTED).store(monotonic_ns(), Ordering::Release);
                return Ok(slot);
            }
        }
        Err(Error::NoLeaseSlot)
    }

    /// Records that the holder of `slot` now runs `key` (NO_KEY: nothing).
    pub fn set(&self, slot: u32, key: u64) -> Result<()> {
        self.check(slot)?;
        let off = self.off(slot);
        self.v.a64(off + LEASE_STARTED).store(monotonic_ns(), Ordering::Release);
        self.v.a64(off + LEASE_KEY).store(key, Ordering::Release);
        Ok(())
    }

    /// Keeps a copy of a popped item (called while the ring cell at `pos` is still claimed;
    /// `slot` was checked by the pop that calls this).
    pub fn hold(&self, slot: u32, pos: u64, item: &Held) {
        let off = self.off(slot);
        self.v.write_u64(off + LEASE_HELD_POS, pos);
        match item {
            Held::Inline(d) => {
                self.v.write_u32(off + LEASE_HELD_KIND, KIND_INLINE);
                self.v.copy_in(off + LEASE_HELD, d);
                self.v.a32(off + LEASE_HELD_LEN).store(d.len() as u32, Ordering::Release);
            }
            Held::Blob(run) => {
                self.v.write_u32(off + LEASE_HELD_KIND, KIND_BLOB);
                self.v.copy_in(off + LEASE_HELD, &run.encode());
                self.v.a32(off + LEASE_HELD_LEN).store(16, Ordering::Release);
            }
        }
    }

    /// Forgets the held item; returns the blob run to free, if it was one (the arena checks
    /// the run before it frees anything).
    pub fn ack(&self, slot: u32) -> Result<Option<Run>> {
        self.check(slot)?;
        let off = self.off(slot);
        let len = self.v.a32(off + LEASE_HELD_LEN).swap(HELD_NONE, Ordering::AcqRel);
        Ok((len != HELD_NONE && self.v.read_u32(off + LEASE_HELD_KIND) == KIND_BLOB)
            .then(|| Run::decode(&self.v.copy_out(off + LEASE_HELD, 16))))
    }

    pub fn release(&self, slot: u32) -> Result<()> {
        self.check(slot)?;
        let off = self.off(slot);
        self.v.a32(off + LEASE_HELD_LEN).store(HELD_NONE, Ordering::Release);
        self.v.a64(off + LEASE_KEY).store(NO_KEY, Ordering::Release);
        self.v.a32(off + LEASE_PID).store(0, Ordering::Release);
        Ok(())
    }

    fn read(&self, slot: u32) -> Lease {
        let off = self.off(slot);
        let key = self.v.a64(off + LEASE_KEY).load(Ordering::Acquire);
        Lease {
            slot,
            pid: self.v.a32(off + LEASE_PID).load(Ordering::Acquire),
            key: (key != NO_KEY).then_some(key),
            started_ns: self.v.a64(off + LEASE_STARTED).load(Ordering::Acquire),
        }
    }

    fn held(&self, slot: u32) -> Option<(u64, Held)> {
        let off = self.off(slot);
        let len = self.v.a32(off + LEASE_HELD_LEN).load(Ordering::Acquire);
        if len == HELD_NONE {
            return None;
        }
        let pos = self.v.read_u64(off + LEASE_HELD_POS);
        let item = if self.v.read_u32(off + LEASE_HELD_KIND) == KIND_BLOB {
            Held::Blob(Run::decode(&self.v.copy_out(off + LEASE_HELD, 16)))
        } else {
            Held::Inline(self.v.copy_out(off + LEASE_HELD, (len as usize).min(self.v.geo.inline_max())))
        };
        Some((pos, item))
    }

    pub fn all(&self) -> Vec<Lease> {
        (0..self.v.geo.leases).map(|s| self.read(s)).filter(|l| l.pid != 0).collect()
    }

    /// Frees every entry of a dead process, returning what they said and the items they held
    /// (with the ring position each was popped from).
    pub fn heal(&self, dead: u32) -> (Vec<Lease>, Vec<(u64, Held)>) {
        let mut leases = Vec::new();
        let mut held = Vec::new();
        for slot in 0..self.v.geo.leases {
            let l = self.read(slot);
            if l.pid == dead {
                leases.push(l);
                held.extend(self.held(slot));
                let _ = self.release(slot); // in range: we iterate the table
            }
        }
        (leases, held)
    }
}
