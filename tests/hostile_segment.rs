//! Shared memory is never trusted: damaged or hostile bytes in a ring or store segment, and
//! out-of-range slot numbers from callers, give errors, never an access outside the mapping.
//! (Before the checked `View`, each of these read or wrote out of bounds.)

use mproc_core::layout::*;
use mproc_core::{Error, Ring, RingOptions, Store};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;

fn opts() -> RingOptions {
    RingOptions { capacity: 4, slot_size: 64, leases: 2, arena_bytes: 64 << 10, chunk_size: 4096 }
}

fn named(tag: &str) -> PathBuf {
    std::env::temp_dir().join(format!("ptm-hostile-{tag}-{}", std::process::id()))
}

/// Writes `bytes` at `off` of the segment file behind `path` (seen at once through every
/// MAP_SHARED mapping of it).
fn scribble(path: &std::path::Path, off: usize, bytes: &[u8]) {
    let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    f.write_all_at(bytes, off as u64).unwrap();
}

#[test]
fn out_of_range_lease_slots_are_errors() {
    let r = Ring::create(None, &opts()).unwrap();
    for slot in [2, 1_000_000, u32::MAX] {
        assert!(matches!(r.ack(slot), Err(Error::BadSlot { slots: 2, .. })), "ack({slot})");
        assert!(matches!(r.lease_set(slot, Some(1)), Err(Error::BadSlot { .. })), "lease_set({slot})");
        assert!(matches!(r.lease_release(slot), Err(Error::BadSlot { .. })), "lease_release({slot})");
        assert!(matches!(r.try_pop_leased(slot), Err(Error::BadSlot { .. })), "try_pop_leased({slot})");
    }
    let e = r.ack(7).unwrap_err().to_string();
    assert_eq!(e, "lease slot 7 out of range 0..2");
    // In-range slots still work.
    let slot = r.lease_claim().unwrap();
    r.lease_set(slot, Some(3)).unwrap();
    r.ack(slot).unwrap();
    r.lease_release(slot).unwrap();
}

#[test]
fn bad_ring_sizes_are_option_errors_not_header_errors() {
    let e = Ring::create(None, &RingOptions { chunk_size: 100, ..opts() }).err().unwrap();
    assert!(matches!(e, Error::BadOptions(_)), "{e:?}");
    assert_eq!(e.to_string(), "chunk size 100 must be a power of two >= 256");
}

#[test]
fn a_damaged_inline_length_is_an_error_and_the_ring_goes_on() {
    let path = named("inline");
    let r = Ring::create(Some(&path), &opts()).unwrap();
    r.try_push(b"first").unwrap();
    r.try_push(b"second").unwrap();
    // Cell 0's length word says 2^31 bytes: reading it would run far past the mapping.
    scribble(&path, HEADER_LEN + CELL_LEN, &(1u32 << 31).to_le_bytes());
    let e = r.try_pop().unwrap_err();
    assert!(matches!(e, Error::Corrupt(_)), "{e:?}");
    assert!(e.to_string().contains("inline item of 2147483648 bytes"), "{e}");
    assert_eq!(r.try_pop().unwrap().unwrap(), b"second");
}

#[test]
fn a_damaged_blob_reference_is_an_error_and_frees_nothing_else() {
    let path = named("blob");
    let r = Ring::create(Some(&path), &opts()).unwrap();
    let big = vec![7u8; 5000];
    r.try_push(&big).unwrap();
    r.try_push(&big).unwrap();
    // Cell 0's blob reference: head chunk far outside the arena.
    let mut run = [0u8; 16];
    run[0..4].copy_from_slice(&1_000_000u32.to_le_bytes());
    run[4..8].copy_from_slice(&2u32.to_le_bytes());
    run[8..16].copy_from_slice(&5000u64.to_le_bytes());
    scribble(&path, HEADER_LEN + CELL_PAYLOAD, &run);
    assert!(matches!(r.try_pop(), Err(Error::Corrupt(_))));
    assert_eq!(r.try_pop().unwrap().unwrap(), big);
    // A length larger than the chunks it claims to span.
    r.try_push(&big).unwrap();
    let cell = HEADER_LEN + 2 * 64; // the third push lands in cell 2
    let mut run = [0u8; 16];
    run[4..8].copy_from_slice(&1u32.to_le_bytes());
    run[8..16].copy_from_slice(&u64::MAX.to_le_bytes());
    scribble(&path, cell + CELL_PAYLOAD, &run);
    assert!(matches!(r.try_pop(), Err(Error::Corrupt(_))));
}

#[test]
fn heal_with_a_damaged_held_copy_hands_back_nothing_bad() {
    let path = named("heal");
    let r = Ring::create(Some(&path), &opts()).unwrap();
    let slot = r.lease_claim().unwrap();
    r.try_push(b"item").unwrap();
    assert_eq!(r.try_pop_leased(slot).unwrap().unwrap(), b"item");
    // The held copy's length word of lease 0 now says more than a lease entry can hold.
    let g = Geometry { cap: 4, slot_size: 64, leases: 2, chunk_size: 4096, chunks: 16 };
    scribble(&path, g.leases_off() + LEASE_HELD_LEN, &(u32::MAX - 1).to_le_bytes());
    // Healing ourselves (as a supervisor would a dead pid) must not read past the entry.
    let rep = r.heal(std::process::id());
    assert_eq!(rep.leases.len(), 1);
    assert!(rep.items.iter().all(|i| i.len() <= r.inline_max()));
}

#[test]
fn ring_attach_rejects_a_geometry_larger_than_the_file() {
    let path = named("geo");
    let r = Ring::create(Some(&path), &opts()).unwrap();
    // Claim 2^20 cells: offsets computed from this would leave the file.
    scribble(&path, H_CAP, &(1u32 << 20).to_le_bytes());
    let e = Ring::attach(&path).err().unwrap();
    assert!(matches!(e, Error::BadHeader(_)), "{e:?}");
    drop(r);
}

#[test]
fn store_attach_checks_counts_against_the_file() {
    let s = Store::create(4, 1 << 20).unwrap();
    s.put("k", b"value").unwrap();
    let copy = named("store");
    std::fs::copy(s.path(), &copy).unwrap();
    // Entry count so large that the entry table would end far past the file.
    scribble(&copy, 8, &(1u64 << 40).to_le_bytes());
    let e = Store::attach(&copy).err().unwrap();
    assert!(matches!(e, Error::BadHeader(_)), "{e:?}");
    assert!(e.to_string().contains("do not fit"), "{e}");
    std::fs::remove_file(&copy).unwrap();
}

#[test]
fn store_entries_pointing_outside_are_not_followed() {
    let s = Store::create(4, 1 << 20).unwrap();
    s.put("k", b"value").unwrap();
    s.put("n", b"other").unwrap();
    let copy = named("store-entry");
    std::fs::copy(s.path(), &copy).unwrap();
    let entry0 = 4096;
    scribble(&copy, entry0 + 16, &u64::MAX.to_le_bytes()); // value length
    scribble(&copy, entry0 + 256 + 4, &u32::MAX.to_le_bytes()); // entry 1: name length
    let other = Store::attach(&copy).unwrap();
    assert!(other.get("k").is_none(), "a value running past the file is not handed out");
    assert!(other.get("n").is_none(), "a name longer than its entry is not read");
    assert!(other.names().is_empty());
    std::fs::remove_file(&copy).unwrap();
}

#[test]
fn store_errors_name_the_problem() {
    let s = Store::create(4, 1 << 20).unwrap();
    s.put("db", b"1").unwrap();
    let e = s.put("db", b"2").unwrap_err();
    assert!(matches!(e, Error::DuplicateKey(_)));
    assert_eq!(e.to_string(), "fixture store key published twice: db");
    let e = s.put(&"x".repeat(300), b"2").unwrap_err();
    assert!(matches!(e, Error::KeyTooLong { len: 300, .. }), "{e:?}");
}

#[test]
fn cells_far_ahead_of_the_counters_do_not_spin_forever() {
    // Fuzzer finding (ring_segment): a cell whose sequence is far ahead of the enqueue counter
    // made a push step the counter one position at a time through ~2^39 positions.
    let path = named("ahead");
    let r = Ring::create(Some(&path), &opts()).unwrap();
    for i in 0..4usize {
        let st = mproc_core::state::pack(1u64 << 38, 0);
        scribble(&path, HEADER_LEN + i * 64 + CELL_STATE, &st.to_le_bytes());
    }
    assert!(matches!(r.try_push(b"x"), Err(Error::Full)));
    assert!(r.try_pop().unwrap().is_none());
}

#[test]
fn a_writer_lock_held_by_another_live_process_is_an_error_not_a_hang() {
    // Fuzzer finding (store_segment): a damaged writer-lock word naming a live process (here
    // pid 1, which never writes to the store) made every put wait forever.
    let s = Store::create(4, 1 << 20).unwrap();
    let copy = named("store-lock");
    std::fs::copy(s.path(), &copy).unwrap();
    scribble(&copy, 192, &1u32.to_le_bytes());
    let mut other = Store::attach(&copy).unwrap();
    other.set_writer_wait(std::time::Duration::from_millis(50));
    let e = other.put("k", b"v").unwrap_err();
    assert!(matches!(e, Error::Corrupt(_)), "{e:?}");
    assert!(e.to_string().contains("held by process 1"), "{e}");
    std::fs::remove_file(&copy).unwrap();
}
