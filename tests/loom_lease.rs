//! Model check of the leased pop's hand-off (ring.rs `pop_inner` + `heal`): a consumer copies
//! the item into its lease entry while it still holds the cell, then releases the cell, and
//! acknowledges the item once it is dealt with. Whatever step the consumer dies after, and
//! whatever a live producer and consumer do meanwhile, healing it hands the item back exactly
//! when it was not acknowledged, and exactly once (never from both the cell and the lease).
//! The ring part is the production protocol (`mproc_core::protocol`); the lease entry is a
//! heap model of the one in shared memory, written in the same order. Run with:
//!   RUSTFLAGS="--cfg loom" cargo test --release --test loom_lease
#![cfg(loom)]

mod loom_common;

use loom::cell::UnsafeCell;
use loom::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use loom::sync::Arc;
use loom::thread;
use loom_common::{model, HeapRing};
use mproc_core::protocol::{self, Claim};

const HELD_NONE: u32 = u32::MAX;

/// A two-cell ring and the dying consumer's lease entry.
struct Model {
    ring: HeapRing,
    held_len: AtomicU32,
    held_pos: AtomicU64,
    held: UnsafeCell<u64>,
}

impl Model {
    fn new() -> Model {
        Model {
            ring: HeapRing::new(2),
            held_len: AtomicU32::new(HELD_NONE),
            held_pos: AtomicU64::new(0),
            held: UnsafeCell::new(0),
        }
    }
}

/// Steps of the dying consumer, in pop_inner's order. It dies after `steps` of them.
fn leased_pop_then_die(m: &Model, me: u32, steps: u32) -> Option<u64> {
    let Some((idx, pos)) = protocol::claim_pop(&m.ring, me) else { return None };
    if steps == 0 {
        return None;
    }
    let v = m.ring.payload[idx].with(|p| unsafe { *p });
    // Leases::hold: position and copy first, then the length word publishes the copy.
    m.held_pos.store(pos, Ordering::Relaxed);
    m.held.with_mut(|p| unsafe { *p = v });
    m.held_len.store(8, Ordering::Release);
    if steps == 1 {
        return None;
    }
    protocol::release(&m.ring, idx, pos);
    if steps == 2 {
        return None;
    }
    // Dealt with: ack.
    m.held_len.swap(HELD_NONE, Ordering::AcqRel);
    Some(v)
}

/// Ring::heal's order: the lease's held copy first, then the cells, skipping a cell whose
/// position the lease already handed back.
fn heal(m: &Model, dead: u32) -> Vec<u64> {
    let mut back = Vec::new();
    let mut held_pos = None;
    if m.held_len.load(Ordering::Acquire) != HELD_NONE {
        held_pos = Some(m.held_pos.load(Ordering::Relaxed));
        back.push(m.held.with(|p| unsafe { *p }));
        m.held_len.store(HELD_NONE, Ordering::Release);
    }
    protocol::heal(&m.ring, dead, |c| match c {
        Claim::Consumed { idx, pos } => {
            if held_pos != Some(pos) {
                back.push(m.ring.payload[idx].with(|p| unsafe { *p }));
            }
        }
        Claim::Producing { .. } => panic!("the dead process was not producing"),
    });
    back
}

fn check(steps: u32) {
    model(move || {
        let m = Arc::new(Model::new());
        assert!(m.ring.push(1, 100));
        let dying = {
            let m = m.clone();
            thread::spawn(move || leased_pop_then_die(&m, 7, steps))
        };
        let producer = {
            let m = m.clone();
            thread::spawn(move || m.ring.push(1, 200))
        };
        let consumer = {
            let m = m.clone();
            thread::spawn(move || m.ring.pop(2))
        };
        let done_by_dying = dying.join().unwrap();
        // The supervisor heals once the process is reaped, while the others still run.
        let back = heal(&m, 7);
        let pushed = producer.join().unwrap();
        let mut got: Vec<u64> = consumer.join().unwrap().into_iter().collect();
        got.extend(done_by_dying);
        got.extend(back);
        while let Some(v) = m.ring.pop(3) {
            got.push(v);
        }
        got.sort();
        let mut expect = vec![100];
        if pushed {
            expect.push(200);
        }
        assert_eq!(got, expect, "died after {steps} steps");
    });
}

#[test]
fn dies_after_claiming() {
    check(0);
}

#[test]
fn dies_after_copying_into_its_lease() {
    check(1);
}

#[test]
fn dies_after_releasing_the_cell() {
    check(2);
}

#[test]
fn dies_after_acknowledging() {
    check(3);
}
