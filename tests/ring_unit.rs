//! In-process behaviour of the ring: FIFO, full/empty, blobs, close, attach checks, leases, heal.

use mproc_core::{Error, Ring, RingOptions};
use std::time::{Duration, Instant};

fn small() -> RingOptions {
    RingOptions { capacity: 8, slot_size: 64, leases: 4, arena_bytes: 64 * 1024, chunk_size: 4096 }
}

#[test]
fn fifo_and_full_and_empty() {
    let r = Ring::create(None, &small()).unwrap();
    assert_eq!(r.try_pop().unwrap(), None);
    for i in 0..8u8 {
        r.try_push(&[i; 10]).unwrap();
    }
    assert!(matches!(r.try_push(b"x"), Err(Error::Full)));
    assert_eq!(r.len(), 8);
    for i in 0..8u8 {
        assert_eq!(r.try_pop().unwrap().unwrap(), vec![i; 10]);
    }
    assert_eq!(r.try_pop().unwrap(), None);
    // Many laps around the ring keep working.
    for lap in 0..1000u32 {
        r.try_push(&lap.to_le_bytes()).unwrap();
        assert_eq!(r.try_pop().unwrap().unwrap(), lap.to_le_bytes());
    }
}

#[test]
fn empty_message_and_inline_limit() {
    let r = Ring::create(None, &small()).unwrap();
    assert_eq!(r.inline_max(), 48);
    r.try_push(b"").unwrap();
    r.try_push(&[7; 48]).unwrap();
    assert_eq!(r.try_pop().unwrap().unwrap(), b"");
    assert_eq!(r.try_pop().unwrap().unwrap(), vec![7; 48]);
}

#[test]
fn blobs_roundtrip_and_are_reclaimed() {
    let r = Ring::create(None, &small()).unwrap();
    let big: Vec<u8> = (0..20_000u32).map(|i| (i * 7) as u8).collect();
    r.try_push(&big).unwrap();
    r.try_push(b"small").unwrap();
    assert!(r.arena_used_chunks() > 0);
    assert_eq!(r.try_pop().unwrap().unwrap(), big);
    assert_eq!(r.arena_used_chunks(), 0, "a consumed blob must be freed");
    assert_eq!(r.try_pop().unwrap().unwrap(), b"small");
}

#[test]
fn blob_too_large_is_a_clear_error() {
    let r = Ring::create(None, &small()).unwrap();
    let err = r.try_push(&vec![0; 1 << 20]).unwrap_err();
    assert!(matches!(err, Error::TooLarge { .. }), "{err}");
    assert!(err.to_string().contains("exceeds the blob arena"));
}

#[test]
fn arena_full_then_space_again() {
    let r = Ring::create(None, &small()).unwrap();
    let chunk = vec![1u8; 30_000]; // 8 chunks each; the arena has 16
    r.try_push(&chunk).unwrap();
    r.try_push(&chunk).unwrap();
    assert!(matches!(r.try_push(&chunk), Err(Error::Full)));
    r.try_pop().unwrap().unwrap();
    r.try_push(&chunk).unwrap();
}

#[test]
fn close_drains_then_reports_closed() {
    let r = Ring::create(None, &small()).unwrap();
    r.try_push(b"a").unwrap();
    r.close();
    assert!(matches!(r.try_push(b"b"), Err(Error::Closed)));
    assert_eq!(r.try_pop().unwrap().unwrap(), b"a");
    assert!(matches!(r.try_pop(), Err(Error::Closed)));
    assert!(matches!(r.pop(None), Err(Error::Closed)));
}

#[test]
fn abort_stops_consumers_at_once() {
    let r = Ring::create(None, &small()).unwrap();
    r.try_push(b"a").unwrap();
    r.abort();
    assert!(matches!(r.try_pop(), Err(Error::Closed)));
}

#[test]
fn pop_times_out_and_close_wakes_waiter() {
    let r = Ring::create(None, &small()).unwrap();
    let t = Instant::now();
    assert_eq!(r.pop(Some(Duration::from_millis(30))).unwrap(), None);
    assert!(t.elapsed() >= Duration::from_millis(30));
    std::thread::scope(|s| {
        let h = s.spawn(|| r.pop(None));
        // Wait until the popper is really asleep on the futex, then close must wake it.
        while r.pop_waiters() == 0 {
            std::thread::yield_now();
        }
        r.close();
        assert!(matches!(h.join().unwrap(), Err(Error::Closed)));
    });
}

#[test]
fn blocking_push_waits_for_space() {
    let r = Ring::create(None, &small()).unwrap();
    for _ in 0..8 {
        r.try_push(b"x").unwrap();
    }
    assert!(matches!(r.push(b"y", Some(Duration::from_millis(20))), Err(Error::Timeout)));
    std::thread::scope(|s| {
        let h = s.spawn(|| r.push(b"y", None));
        let mut popped = 0;
        while popped == 0 {
            if r.try_pop().unwrap().is_some() {
                popped += 1;
            }
        }
        h.join().unwrap().unwrap();
    });
    assert_eq!(r.len(), 8);
}

#[test]
fn threads_exactly_once() {
    use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
    let opts = RingOptions { capacity: 64, ..small() };
    let r = Ring::create(None, &opts).unwrap();
    const N: u32 = 20_000;
    let seen: Vec<AtomicU8> = (0..N * 2).map(|_| AtomicU8::new(0)).collect();
    let taken = AtomicUsize::new(0);
    std::thread::scope(|s| {
        let producers: Vec<_> = (0..2u32)
            .map(|p| {
                let r = &r;
                s.spawn(move || {
                    for i in 0..N {
                        r.push(&(p * N + i).to_le_bytes(), None).unwrap();
                    }
                })
            })
            .collect();
        for _ in 0..3 {
            s.spawn(|| {
                while let Ok(Some(v)) = r.pop(None) {
                    let k = u32::from_le_bytes(v.try_into().unwrap());
                    seen[k as usize].fetch_add(1, Ordering::Relaxed);
                    taken.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        for p in producers {
            p.join().unwrap();
        }
        // Consumers drain what is left, then see Closed.
        r.close();
    });
    assert_eq!(taken.load(Ordering::Relaxed), (N * 2) as usize);
    assert!(seen.iter().all(|c| c.load(Ordering::Relaxed) == 1));
}

#[test]
fn attach_checks_header() {
    let dir = std::env::temp_dir().join(format!("ptm-attach-{}", std::process::id()));
    let r = Ring::create(Some(&dir), &small()).unwrap();
    let other = Ring::attach(&dir).unwrap();
    r.try_push(b"hello").unwrap();
    assert_eq!(other.try_pop().unwrap().unwrap(), b"hello");
    let memfd = Ring::create(None, &small()).unwrap();
    let via_proc = Ring::attach(memfd.path()).unwrap();
    memfd.try_push(b"m").unwrap();
    assert_eq!(via_proc.try_pop().unwrap().unwrap(), b"m");

    let junk = std::env::temp_dir().join(format!("ptm-junk-{}", std::process::id()));
    std::fs::write(&junk, vec![0u8; 8192]).unwrap();
    let err = Ring::attach(&junk).err().unwrap();
    assert!(err.to_string().contains("bad magic"), "{err}");
    std::fs::write(&junk, b"tiny").unwrap();
    assert!(Ring::attach(&junk).err().unwrap().to_string().contains("only 4 bytes"));
    std::fs::remove_file(&junk).unwrap();
    drop(other);
    drop(r);
    assert!(!dir.exists(), "the creator unlinks a named segment on drop");
}

#[test]
fn leases_record_and_heal() {
    let r = Ring::create(None, &small()).unwrap();
    let slot = r.lease_claim().unwrap();
    r.lease_set(slot, Some(42)).unwrap();
    let ls = r.leases();
    assert_eq!(ls.len(), 1);
    assert_eq!(ls[0].key, Some(42));
    assert_eq!(ls[0].pid, std::process::id());
    r.lease_set(slot, None).unwrap();
    assert_eq!(r.leases()[0].key, None);
    for _ in 1..4 {
        r.lease_claim().unwrap();
    }
    assert!(matches!(r.lease_claim(), Err(Error::NoLeaseSlot)));
    let rep = r.heal(std::process::id());
    assert_eq!(rep.leases.len(), 4);
    assert!(r.leases().is_empty());
}

#[test]
fn leased_pop_is_handed_back_by_heal_until_acked() {
    let r = Ring::create(None, &small()).unwrap();
    let slot = r.lease_claim().unwrap();
    let big = vec![9u8; 10_000];
    for m in [b"one".to_vec(), big.clone(), b"three".to_vec()] {
        r.try_push(&m).unwrap();
    }
    assert_eq!(r.try_pop_leased(slot).unwrap().unwrap(), b"one");
    r.ack(slot).unwrap();
    assert_eq!(r.try_pop_leased(slot).unwrap().unwrap(), big);
    assert!(r.arena_used_chunks() > 0, "a held blob stays allocated until ack");
    // "Die" holding the blob: heal hands it back exactly once and frees its chunks.
    let rep = r.heal(std::process::id());
    assert_eq!(rep.items, vec![big]);
    assert_eq!(r.arena_used_chunks(), 0);
    let slot = r.lease_claim().unwrap();
    assert_eq!(r.try_pop_leased(slot).unwrap().unwrap(), b"three");
    // The next pop acknowledges the previous item implicitly.
    r.try_push(b"four").unwrap();
    assert_eq!(r.try_pop_leased(slot).unwrap().unwrap(), b"four");
    let rep = r.heal(std::process::id());
    assert_eq!(rep.items, vec![b"four".to_vec()]);
}

#[test]
fn fixture_store_put_get_across_attach() {
    use mproc_core::Store;
    let s = Store::create(4, 16 << 20).unwrap();
    let big: Vec<u8> = (0..5_000_000u32).map(|i| i as u8).collect();
    s.put("db", b"connection-info").unwrap();
    s.put("blob", &big).unwrap();
    let other = Store::attach(s.path()).unwrap();
    assert_eq!(other.get("db").unwrap(), b"connection-info");
    assert_eq!(other.get("blob").unwrap(), &big[..]);
    assert!(other.get("missing").is_none());
    assert!(s.put("db", b"again").is_err(), "a key is published once");
    assert_eq!(other.names(), vec!["db".to_string(), "blob".to_string()]);
    s.put("c", b"").unwrap();
    s.put("d", b"x").unwrap();
    assert!(matches!(s.put("e", b"y"), Err(Error::Full)));
    assert!(matches!(Store::create(4, 10).unwrap().put("big", &[0; 100]), Err(Error::TooLarge { .. })));
}
