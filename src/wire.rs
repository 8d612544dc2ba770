//! The wire protocol between the main node and the bridges of worker nodes (multi-host):
//! length-prefixed, versioned frames carrying serde + postcard messages.
//!
//! ```text
//! frame := len: u32 LE (bytes after this field) | version: u16 LE | postcard(Message)
//! ```
//! The decoder checks the length against a maximum *before* buffering a payload, so a peer
//! announcing a huge frame costs nothing, and every malformed input is an error (never a
//! panic): the caller drops that connection with a log line.
//!
//! Status: the format and its decoder exist and are tested (incl. proptest); the TCP service,
//! authentication handshake and bridge that use them are the multi-host work still to come.

use serde::{Deserialize, Serialize};
use std::fmt;

pub const WIRE_VERSION: u16 = 1;
/// Default largest frame accepted (a batch of results with long tracebacks fits easily).
pub const DEFAULT_MAX_FRAME: usize = 64 << 20;
const LEN: usize = 4;
const VERSION: usize = 2;

/// Everything that crosses the network between main and bridge.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// Bridge -> main, first frame: who it is and what it collected.
    Hello { node: String, workers: u32, test_count: u32, collection_digest: Vec<u8> },
    /// Main -> bridge: prove you hold the run's token (HMAC over this nonce).
    Challenge { nonce: Vec<u8> },
    /// Bridge -> main: HMAC(token, nonce).
    Proof { mac: Vec<u8> },
    /// Main -> bridge: accepted under this node id.
    Welcome { node_id: u32 },
    /// Main -> bridge: refused (wrong token, different collection, ...), with the reason.
    Refused { reason: String },
    /// Bridge -> main: room for this many more units.
    Credit { units: u32 },
    /// Main -> bridge: units of work (test indices).
    Units { units: Vec<Vec<u32>> },
    /// Bridge -> main: a batch of worker results (opaque to the wire layer).
    Results { batch: Vec<Vec<u8>> },
    /// Bridge -> main: units it took but will not start (node shutting down).
    Return { units: Vec<Vec<u32>> },
    /// Main -> bridge: the queue is drained; finish and report.
    NoMoreWork,
    /// Either way: still alive.
    Heartbeat,
    /// Main -> bridge: stop now (-x reached, Ctrl-C, fatal error).
    Stop,
}

#[derive(Debug, PartialEq, Eq)]
pub enum WireError {
    Oversized { len: usize, max: usize },
    Version { got: u16 },
    Malformed(String),
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WireError::Oversized { len, max } => write!(f, "frame of {len} bytes exceeds the limit of {max}"),
            WireError::Version { got } => {
                write!(f, "peer speaks wire version {got}, this build speaks {WIRE_VERSION}")
            }
            WireError::Malformed(why) => write!(f, "malformed frame: {why}"),
        }
    }
}

impl std::error::Error for WireError {}

/// Encodes one message as a complete frame.
pub fn encode(msg: &Message) -> Vec<u8> {
    let payload = postcard::to_stdvec(msg).expect("postcard encodes every Message");
    let mut out = Vec::with_capacity(LEN + VERSION + payload.len());
    out.extend_from_slice(&((VERSION + payload.len()) as u32).to_le_bytes());
    out.extend_from_slice(&WIRE_VERSION.to_le_bytes());
    out.extend_from_slice(&payload);
    out
}

/// Reassembles frames from a byte stream fed in arbitrary pieces.
pub struct FrameDecoder {
    buf: Vec<u8>,
    max: usize,
}

impl FrameDecoder {
    pub fn new(max_frame: usize) -> FrameDecoder {
        FrameDecoder { buf: Vec::new(), max: max_frame }
    }

    /// Adds bytes read from the connection.
    pub fn feed(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete message, None if more bytes are needed, or an error after which the
    /// connection must be dropped.
    pub fn next_message(&mut self) -> Result<Option<Message>, WireError> {
        if self.buf.len() < LEN {
            return Ok(None);
        }
        let len = u32::from_le_bytes(self.buf[..LEN].try_into().unwrap()) as usize;
        if len > self.max {
            return Err(WireError::Oversized { len, max: self.max });
        }
        if len < VERSION {
            return Err(WireError::Malformed(format!("frame length {len} is shorter than its header")));
        }
        if self.buf.len() < LEN + len {
            return Ok(None);
        }
        let version = u16::from_le_bytes(self.buf[LEN..LEN + VERSION].try_into().unwrap());
        if version != WIRE_VERSION {
            return Err(WireError::Version { got: version });
        }
        let body = &self.buf[LEN + VERSION..LEN + len];
        let msg = postcard::from_bytes::<Message>(body).map_err(|e| WireError::Malformed(e.to_string()))?;
        self.buf.drain(..LEN + len);
        Ok(Some(msg))
    }

    /// Bytes buffered but not yet consumed.
    pub fn pending(&self) -> usize {
        self.buf.len()
    }
}
