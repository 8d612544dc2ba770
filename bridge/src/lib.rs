//! The per-node bridge between the coordinator's global TCP queue and the node-local ring.
//!
//! It runs as its own process on every worker node (forked by the node's pytest process, see
//! `pytest_mproc/worker_node.py`): `link` connects and authenticates and applies what the
//! coordinator sends; `run` forwards results in batches and asks for work by credit, sized by
//! `prefetch`.
#![deny(clippy::undocumented_unsafe_blocks)]

pub mod deploy;
pub mod link;
pub mod prefetch;
pub mod run;

pub use run::{run, BridgeConfig, Outcome, READY_WORD};

use mproc_core::{Result, Ring};
use std::path::Path;

/// A one-line status of a node ring, as the bridge sees it.
pub fn ring_status(path: &Path) -> Result<String> {
    let ring = Ring::attach(path)?;
    Ok(format!(
        "ring {}: capacity {}, queued {}, closed {}, leases {}",
        path.display(),
        ring.capacity(),
        ring.len(),
        ring.is_closed(),
        ring.leases().len()
    ))
}
