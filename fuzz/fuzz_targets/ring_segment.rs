//! A ring segment damaged by arbitrary writes (offset, value pairs from the fuzzer, anywhere in
//! the header, cells, leases, chunk table or arena), then attached and used: attach, pops,
//! leased pops, acks, heal and the lease table must return values or errors, never touch memory
//! outside the mapping.
#![no_main]
use libfuzzer_sys::fuzz_target;
use mproc_core::{Ring, RingOptions};
use std::os::unix::fs::FileExt;

fuzz_target!(|data: &[u8]| {
    let path = std::path::PathBuf::from(format!("/dev/shm/ptm-fuzz-ring-{}", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let opts = RingOptions { capacity: 4, slot_size: 64, leases: 2, arena_bytes: 8192, chunk_size: 256 };
    let ring = Ring::create(Some(&path), &opts).unwrap();
    // Some real content first: inline items, a blob, a held lease copy.
    ring.try_push(b"inline item").unwrap();
    ring.try_push(&[5u8; 700]).unwrap();
    ring.try_push(b"third").unwrap();
    let slot = ring.lease_claim().unwrap();
    let _ = ring.try_pop_leased(slot);
    let len = std::fs::metadata(&path).unwrap().len();
    let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    for w in data.chunks_exact(6) {
        let off = u16::from_le_bytes([w[0], w[1]]) as u64 % len;
        let _ = file.write_all_at(&w[2..6], off);
    }
    if let Ok(other) = Ring::attach(&path) {
        for _ in 0..6 {
            let _ = other.try_pop();
            let _ = other.try_pop_leased(1);
            let _ = other.ack(1);
        }
        let _ = other.leases();
        let _ = other.heal(std::process::id());
        let _ = other.try_push(&[1u8; 300]);
        let _ = other.try_pop();
    }
    drop(ring);
});
