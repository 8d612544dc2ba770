//! Where the coordinator delivers node results and events: the results ring of a main running
//! in this process, or the connection of a remote main (standalone orchestration).

use super::events::Event;
use crate::net::Outbox;
use crate::wire::Message;
use crate::Ring;
use std::sync::Arc;
use std::time::Duration;

pub enum MainSink {
    /// The main runs in this process: push straight into its results ring.
    Ring(Arc<Ring>),
    /// A remote main connected to a standalone coordinator (queued: a main that reads slowly
    /// must not hold up the nodes' reader threads).
    Remote(Outbox),
    /// Standalone coordinator whose main has not connected yet: events wait here.
    Pending(Vec<String>),
}

impl MainSink {
    pub fn results(&mut self, batch: Vec<Vec<u8>>) {
        match self {
            MainSink::Ring(ring) => {
                for item in batch {
                    push(ring, &item);
                }
            }
            MainSink::Remote(w) => {
                let _ = w.send(&Message::Results { batch, running: Vec::new() });
            }
            MainSink::Pending(_) => {} // no main, hence no units, hence no results
        }
    }

    pub fn event(&mut self, ev: &Event) {
        let json = ev.to_json();
        match self {
            MainSink::Ring(ring) => push(ring, &Event::ring_item(&json)),
            MainSink::Remote(w) => {
                let _ = w.send(&Message::Event { json });
            }
            MainSink::Pending(q) => q.push(json),
        }
    }
}

/// Blocks while the main catches up (it drains its ring continuously); a closed ring means the
/// main has finished, and late items are dropped.
fn push(ring: &Ring, item: &[u8]) {
    loop {
        match ring.push(item, Some(Duration::from_secs(1))) {
            Ok(()) => return,
            Err(crate::Error::Timeout) => continue,
            Err(_) => return,
        }
    }
}
