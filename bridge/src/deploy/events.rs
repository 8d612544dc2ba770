//! What the hosts report to the main while they work: one JSON line per step
//! (`{"host": n, "phase": ..., "detail": ..., "secs": seconds since the fleet started}`).

use std::sync::mpsc::Sender;
use std::time::Instant;

#[derive(Clone)]
pub struct Emitter {
    tx: Sender<String>,
    t0: Instant,
}

impl Emitter {
    pub fn new(tx: Sender<String>, t0: Instant) -> Emitter {
        Emitter { tx, t0 }
    }

    pub fn emit(&self, host: usize, phase: &str, detail: &str) {
        let line = serde_json::json!({
            "host": host,
            "phase": phase,
            "detail": detail,
            "secs": self.t0.elapsed().as_secs_f64(),
        });
        let _ = self.tx.send(line.to_string());
    }
}
