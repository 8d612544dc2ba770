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
//! Used by the coordinator (`coordinator/`), the bridge crate and the main's remote link.

use serde::{Deserialize, Serialize};
use std::fmt;

pub const WIRE_VERSION: u16 = 1;
/// Default largest frame accepted (a batch of results with long tracebacks fits easily).
pub const DEFAULT_MAX_FRAME: usize = 64 << 20;
const LEN: usize = 4;
const VERSION: usize = 2;

/// Who is connecting to the coordinator.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// A worker node's bridge: takes units, returns results.
    Node,
    /// The reporting pytest main, when the coordinator runs as its own process
    /// (`pytest_mproc.orchestration.main`): submits units, receives results.
    Main,
}

/// Everything that crosses the network between the coordinator and its clients.
///
/// Handshake (mutual, before any payload): server `Challenge` -> client `Proof` (its answer and
/// its own nonce) -> server `Accepted` (the server's answer) -> client `Hello` -> server
/// `Welcome` or `Refused`. Until `Accepted` is verified both sides decode only these small
/// frames, under a tiny size limit.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// Server -> client, first frame: prove you hold the run's token (HMAC over this nonce).
    Challenge { nonce: Vec<u8> },
    /// Client -> server: HMAC(token, client role, nonce), and a nonce for the server to answer.
    Proof { mac: Vec<u8>, nonce: Vec<u8> },
    /// Server -> client: HMAC(token, server role, client nonce).
    Accepted { mac: Vec<u8> },
    /// Client -> server, first frame after authentication: who it is and what it collected.
    Hello { role: Role, node: String, workers: u32, collection: Vec<String> },
    /// Server -> client: admitted under this node id.
    Welcome { node_id: u32 },
    /// Server -> client: refused (wrong token, different collection, ...), with the reason.
    Refused { reason: String },
    /// Node -> server: room for this many more units.
    Credit { units: u32 },
    /// Server -> node: units of work (test indices); a SINGLE_NODE group arrives as one frame.
    Units { units: Vec<Vec<u32>> },
    /// Server -> node, main -> server: the published value of a global fixture.
    Fixture { key: String, value: Vec<u8> },
    /// Node -> server -> main: worker results (opaque here) and the tests running right now.
    Results { batch: Vec<Vec<u8>>, running: Vec<u32> },
    /// Main -> server: entries for the queue (an entry is one unit, or a SINGLE_NODE block of
    /// units that must go to one node); `front`: re-queued work, ahead of the rest.
    Submit { entries: Vec<Vec<Vec<u32>>>, front: bool },
    /// Server -> main: something happened to a node (JSON, see coordinator::events).
    Event { json: String },
    /// Main -> server -> nodes: every test has a result; finish and leave.
    Finish,
    /// Node -> server: finished cleanly, leaving.
    Bye,
    /// Either way: still alive.
    Heartbeat,
    /// Main -> server -> nodes: no new test starts (-x reached, Ctrl-C, fatal error).
    Stop,
    /// Main -> server -> nodes: report what every worker is running, with its stack (SIGQUIT
    /// on the main); the reports come back as results.
    Report,
}

/// Frames accepted before the peer is authenticated: a handshake message is tiny.
pub const HANDSHAKE_MAX_FRAME: usize = 512;

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

    /// Raises (or lowers) the frame limit, e.g. once the peer is authenticated.
    pub fn set_max_frame(&mut self, max: usize) {
        self.max = max;
    }

    /// Bytes buffered but not yet consumed.
    pub fn pending(&self) -> usize {
        self.buf.len()
    }
}
