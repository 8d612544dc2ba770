//! Atomics used by the lock-free protocol: std's normally, loom's under `--cfg loom` so the
//! model checker can explore every interleaving of `protocol`.

#[cfg(loom)]
pub use loom::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};
#[cfg(not(loom))]
pub use std::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};
