//! What the loom model tests share: a ring whose words live on the heap (loom atomics), run by
//! the production protocol (`mproc_core::protocol`), and the model-checking settings.
#![allow(dead_code)] // each model uses what it needs

use loom::cell::UnsafeCell;
use loom::sync::atomic::AtomicU64;
use mproc_core::protocol::{self, Read, RingMem};
use mproc_core::state::pack;

pub struct HeapRing {
    cap: u64,
    enq: AtomicU64,
    deq: AtomicU64,
    states: Vec<AtomicU64>,
    pub payload: Vec<UnsafeCell<u64>>,
}

impl HeapRing {
    pub fn new(cap: u64) -> HeapRing {
        HeapRing {
            cap,
            enq: AtomicU64::new(0),
            deq: AtomicU64::new(0),
            states: (0..cap).map(|i| AtomicU64::new(pack(i, 0))).collect(),
            payload: (0..cap).map(|_| UnsafeCell::new(0)).collect(),
        }
    }
    pub fn push(&self, me: u32, v: u64) -> bool {
        protocol::try_push(self, me, |idx, _| self.payload[idx].with_mut(|p| unsafe { *p = v }))
    }
    pub fn pop(&self, me: u32) -> Option<u64> {
        protocol::try_pop(self, me, |idx, _| Read::Item(self.payload[idx].with(|p| unsafe { *p })))
    }
}

impl RingMem for HeapRing {
    fn cap(&self) -> u64 {
        self.cap
    }
    fn enq(&self) -> &AtomicU64 {
        &self.enq
    }
    fn deq(&self) -> &AtomicU64 {
        &self.deq
    }
    fn state(&self, idx: usize) -> &AtomicU64 {
        &self.states[idx]
    }
}

/// Preemption bound: exhaustive up to this many forced context switches per execution, which
/// (per loom's docs and the CHESS results it builds on) finds most concurrency bugs while
/// keeping 3-4 threads tractable. Override with LOOM_MAX_PREEMPTIONS.
pub fn model<F: Fn() + Sync + Send + 'static>(f: F) {
    let mut b = loom::model::Builder::new();
    if b.preemption_bound.is_none() {
        b.preemption_bound = Some(3);
    }
    b.check(f);
}

