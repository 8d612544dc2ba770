//! Model checking of the lock-free ring protocol with loom: every interleaving of a few
//! producers and consumers, including a consumer that "dies" right after claiming a cell while
//! the supervisor heals it. Run with:
//!   RUSTFLAGS="--cfg loom" cargo test --release --test loom_protocol
#![cfg(loom)]

mod loom_common;

use loom::sync::Arc;
use loom::thread;
use loom_common::{model, HeapRing};
use mproc_core::protocol::{self, Claim, Read};

fn run(producers: u32, consumers: u32) {
    model(move || {
        let r = Arc::new(HeapRing::new(2));
        let p: Vec<_> = (1..=producers)
            .map(|me| {
                let r = r.clone();
                thread::spawn(move || assert!(r.push(me, me as u64 * 10)))
            })
            .collect();
        let c: Vec<_> = (0..consumers)
            .map(|k| {
                let r = r.clone();
                thread::spawn(move || r.pop(100 + k))
            })
            .collect();
        for h in p {
            h.join().unwrap();
        }
        let mut got: Vec<u64> = c.into_iter().filter_map(|h| h.join().unwrap()).collect();
        while let Some(v) = r.pop(9) {
            got.push(v);
        }
        got.sort();
        assert_eq!(got, (1..=producers as u64).map(|p| p * 10).collect::<Vec<_>>());
    });
}

#[test]
fn two_producers_one_consumer_exactly_once() {
    run(2, 1);
}

#[test]
fn one_producer_two_consumers_exactly_once() {
    run(1, 2);
}

/// Three items through two cells: the producer must wait for the consumer to release a cell
/// (spin with yield, which loom schedules), so every write of a lapped cell races with the
/// read of its previous item unless release really comes after the read.
#[test]
fn wraparound_fifo() {
    model(|| {
        let r = Arc::new(HeapRing::new(2));
        let prod = {
            let r = r.clone();
            thread::spawn(move || {
                for v in 1..=3u64 {
                    while !r.push(1, v) {
                        thread::yield_now();
                    }
                }
            })
        };
        let mut got = Vec::new();
        while got.len() < 3 {
            match r.pop(2) {
                Some(v) => got.push(v),
                None => thread::yield_now(),
            }
        }
        prod.join().unwrap();
        assert_eq!(got, vec![1, 2, 3]);
    });
}

/// Consumer 7 claims a cell and dies (never releases). The supervisor heals it while a live
/// producer and consumer keep going: the item is handed back exactly once, nothing else is
/// lost or duplicated, and the ring is usable afterwards.
#[test]
fn dead_consumer_is_healed_concurrently() {
    model(|| {
        let r = Arc::new(HeapRing::new(2));
        assert!(r.push(1, 100));
        let dead = protocol::claim_pop(&*r, 7).expect("claimed");
        let _ = dead;
        let prod = {
            let r = r.clone();
            thread::spawn(move || r.push(1, 200))
        };
        let cons = {
            let r = r.clone();
            thread::spawn(move || r.pop(2))
        };
        let healer = {
            let r = r.clone();
            thread::spawn(move || {
                let mut back = Vec::new();
                protocol::heal(&*r, 7, |c| match c {
                    Claim::Consumed { idx, .. } => back.push(r.payload[idx].with(|p| unsafe { *p })),
                    Claim::Producing { .. } => panic!("7 was not producing"),
                });
                back
            })
        };
        let pushed = prod.join().unwrap();
        let mut got: Vec<u64> = cons.join().unwrap().into_iter().collect();
        let back = healer.join().unwrap();
        assert_eq!(back, vec![100]);
        while let Some(v) = r.pop(3) {
            got.push(v);
        }
        let expect: Vec<u64> = if pushed { vec![200] } else { vec![] };
        assert_eq!(got, expect);
        // After healing, the ring takes a full load again.
        assert!(r.push(1, 1) && r.push(1, 2));
    });
}

/// Producer 8 claims a cell and dies before publishing: heal turns it into a tombstone that a
/// concurrent consumer skips, and later items still flow.
#[test]
fn dead_producer_becomes_tombstone() {
    model(|| {
        let r = Arc::new(HeapRing::new(2));
        let _claim = protocol::claim_push(&*r, 8).expect("claimed");
        let prod = {
            let r = r.clone();
            thread::spawn(move || assert!(r.push(1, 5)))
        };
        let healer = {
            let r = r.clone();
            thread::spawn(move || {
                let mut n = 0;
                protocol::heal(&*r, 8, |c| match c {
                    Claim::Producing { idx, .. } => {
                        r.payload[idx].with_mut(|p| unsafe { *p = u64::MAX });
                        n += 1
                    }
                    Claim::Consumed { .. } => panic!("8 was producing"),
                });
                n
            })
        };
        prod.join().unwrap();
        assert_eq!(healer.join().unwrap(), 1);
        let got = protocol::try_pop(&*r, 3, |idx, _| {
            let v = r.payload[idx].with(|p| unsafe { *p });
            if v == u64::MAX { Read::Tombstone } else { Read::Item(v) }
        });
        assert_eq!(got, Some(5));
    });
}
