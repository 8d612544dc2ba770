//! The lease table: one entry per live worker saying which work item it is running and since
//! when, so the supervisor can name the test a dead worker was in the middle of.

use crate::error::{Error, Result};
use crate::layout::{LEASE_KEY, LEASE_LEN, LEASE_PID, LEASE_STARTED};
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
    /// CLOCK_MONOTONIC nanoseconds when `key` was started (comparable across processes).
    pub started_ns: u64,
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
        self.v.geo.leases_off() + slot as usize * LEASE_LEN
    }

    /// Takes a free entry for process `pid` (one CAS, so two racing workers never share one).
    pub fn claim(&self, pid: u32) -> Result<u32> {
        for slot in 0..self.v.geo.leases {
            let off = self.off(slot);
            // Reset the key first: a previous owner of this slot may have died mid-test.
            if self.v.a32(off + LEASE_PID).load(Ordering::Acquire) == 0
                && self.v.a32(off + LEASE_PID).compare_exchange(0, pid, Ordering::AcqRel, Ordering::Relaxed).is_ok()
            {
                self.v.a64(off + LEASE_KEY).store(NO_KEY, Ordering::Release);
                self.v.a64(off + LEASE_STARTED).store(monotonic_ns(), Ordering::Release);
                return Ok(slot);
            }
        }
        Err(Error::NoLeaseSlot)
    }

    /// Records that the holder of `slot` now runs `key` (NO_KEY: nothing).
    pub fn set(&self, slot: u32, key: u64) {
        let off = self.off(slot);
        self.v.a64(off + LEASE_STARTED).store(monotonic_ns(), Ordering::Release);
        self.v.a64(off + LEASE_KEY).store(key, Ordering::Release);
    }

    pub fn release(&self, slot: u32) {
        let off = self.off(slot);
        self.v.a64(off + LEASE_KEY).store(NO_KEY, Ordering::Release);
        self.v.a32(off + LEASE_PID).store(0, Ordering::Release);
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

    pub fn all(&self) -> Vec<Lease> {
        (0..self.v.geo.leases).map(|s| self.read(s)).filter(|l| l.pid != 0).collect()
    }

    /// Frees every entry of a dead process, returning what they said.
    pub fn heal(&self, dead: u32) -> Vec<Lease> {
        let mut out = Vec::new();
        for slot in 0..self.v.geo.leases {
            let l = self.read(slot);
            if l.pid == dead {
                out.push(l);
                self.release(slot);
            }
        }
        out
    }
}
