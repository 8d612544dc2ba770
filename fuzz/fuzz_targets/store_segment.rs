//! A fixture-store segment damaged by arbitrary writes, then attached and read: attach, get and
//! names must return values or errors, and whatever `get` returns lies inside the file.
#![no_main]
use libfuzzer_sys::fuzz_target;
use mproc_core::Store;
use std::os::unix::fs::FileExt;

fuzz_target!(|data: &[u8]| {
    let store = Store::create(8, 64 << 10).unwrap();
    store.put("global:db", b"a value").unwrap();
    store.put("node:x", &[9u8; 1000]).unwrap();
    let path = std::path::PathBuf::from(format!("/dev/shm/ptm-fuzz-store-{}", std::process::id()));
    std::fs::copy(store.path(), &path).unwrap();
    let len = std::fs::metadata(&path).unwrap().len();
    let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    for w in data.chunks_exact(10) {
        // Offsets concentrate on the header and entry table, where the structure lives.
        let off = u16::from_le_bytes([w[0], w[1]]) as u64 % len.min(8192);
        let _ = file.write_all_at(&w[2..10], off);
    }
    if let Ok(mut other) = Store::attach(&path) {
        // A damaged writer-lock word naming a live process makes put wait this long, then fail.
        other.set_writer_wait(std::time::Duration::from_millis(1));
        for name in other.names() {
            if let Some(v) = other.get(&name) {
                assert!(v.len() as u64 <= len);
            }
        }
        let _ = other.get("global:db");
        let _ = other.put("new", b"v");
    }
    let _ = std::fs::remove_file(&path);
});
