//! The fixture store with several writer processes at once (on a worker node, the node's
//! supervisor publishes node fixtures while its bridge publishes global ones): every value
//! published by any writer is readable, intact, under its own name. This test binary
//! re-executes itself as the writers.

use mproc_core::Store;
use std::path::Path;
use std::process::Command;

const ROLE: &str = "MPROC_STORE_WRITER";
const KEYS: usize = 400;

fn value(writer: usize, k: usize) -> Vec<u8> {
    let n = 1 + (k * 37 + writer * 11) % 900;
    (0..n).map(|i| (i + k + writer) as u8).collect()
}

/// Entry point of the writer processes; does nothing when run as a normal test.
#[test]
fn writer_entry() {
    let Ok(writer) = std::env::var(ROLE) else { return };
    let writer: usize = writer.parse().unwrap();
    let store = Store::attach(Path::new(&std::env::var("MPROC_STORE").unwrap())).unwrap();
    // Start together: wait (spinning, no sleep) until the parent publishes "go".
    while store.get("go").is_none() {
        std::hint::spin_loop();
    }
    for k in 0..KEYS {
        store.put(&format!("w{writer}:{k}"), &value(writer, k)).unwrap();
    }
}

#[test]
fn concurrent_writers_in_separate_processes_lose_nothing() {
    const WRITERS: usize = 3;
    let store = Store::create(WRITERS * KEYS + 1, 64 << 20).unwrap();
    let children: Vec<_> = (0..WRITERS)
        .map(|w| {
            Command::new(std::env::current_exe().unwrap())
                .args(["--exact", "writer_entry", "--nocapture", "--test-threads=1"])
                .env(ROLE, w.to_string())
                .env("MPROC_STORE", store.path())
                .spawn()
                .unwrap()
        })
        .collect();
    store.put("go", b"").unwrap();
    for mut c in children {
        assert!(c.wait().unwrap().success(), "a writer failed");
    }
    assert_eq!(store.names().len(), WRITERS * KEYS + 1);
    for w in 0..WRITERS {
        for k in 0..KEYS {
            let got = store.get(&format!("w{w}:{k}")).unwrap_or_else(|| panic!("w{w}:{k} lost"));
            assert_eq!(got, &value(w, k)[..], "w{w}:{k} overwritten");
        }
    }
}
