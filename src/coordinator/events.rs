//! What the coordinator tells the main about nodes. Travels in the main's results ring (as
//! `b"J"` + JSON, beside the workers' pickled results) or as `Message::Event` to a remote main.

use serde::Serialize;

/// Tag byte of a coordinator event in the main's results ring (pickles start with 0x80).
pub const EVENT_TAG: u8 = b'J';

#[derive(Serialize, Debug, Clone)]
#[serde(tag = "ev", rename_all = "snake_case")]
pub enum Event {
    /// A node passed the handshake and the collection check.
    Joined { node: u32, name: String, workers: u32, peer: String },
    /// A peer was turned away (wrong token, different collection, malformed frames).
    Refused { peer: String, name: String, reason: String },
    /// A node vanished before finishing: every unit it was given (the main re-queues those
    /// without results) and the tests it last reported running (the main reports them crashed).
    Lost { node: u32, name: String, reason: String, units: Vec<Vec<u32>>, running: Vec<u32> },
    /// A node finished cleanly and left, having been handed `tests` tests in all.
    Left { node: u32, name: String, tests: u32 },
    /// A remote main lost its coordinator (standalone orchestration mode).
    CoordinatorLost { reason: String },
}

impl Event {
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("events always serialize")
    }

    /// The event as an item of the main's results ring.
    pub fn ring_item(json: &str) -> Vec<u8> {
        let mut v = Vec::with_capacity(json.len() + 1);
        v.push(EVENT_TAG);
        v.extend_from_slice(json.as_bytes());
        v
    }
}
