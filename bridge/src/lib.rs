//! The per-node bridge between the main node's global TCP queue and the node-local ring.
//!
//! Status: only the ring side exists so far (attach and report); the TCP client, refill loop and
//! result batching arrive with multi-host support.

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
