//! The mutual HMAC handshake of every multi-host connection (see `wire::Message`): nothing but
//! the tiny handshake frames is decoded before both sides proved they hold the run's token.

use crate::auth::{new_nonce, prove, verify, ROLE_CLIENT, ROLE_SERVER};
use crate::net::{Conn, NetError};
use crate::wire::{Message, Role, DEFAULT_MAX_FRAME, HANDSHAKE_MAX_FRAME};
use std::time::Duration;

/// What an authenticated client said about itself.
#[derive(Debug, Clone)]
pub struct Hello {
    pub role: Role,
    pub node: String,
    pub workers: u32,
    pub collection: Vec<String>,
}

/// Why a handshake failed, as one line for the log and the peer.
pub type Refusal = String;

fn expect(conn: &mut Conn, what: &str) -> Result<Message, Refusal> {
    conn.recv().map_err(|e| match e {
        NetError::Wire(w) => format!("bad {what} frame: {w}"),
        other => format!("no {what}: {other}"),
    })
}

/// Server side: challenge, verify, answer, read Hello. On a wrong token the peer is told so and
/// the connection must be dropped.
pub fn accept(conn: &mut Conn, token: &[u8]) -> Result<Hello, Refusal> {
    conn.set_max_frame(HANDSHAKE_MAX_FRAME);
    let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
    let nonce = new_nonce();
    conn.send(&Message::Challenge { nonce: nonce.to_vec() }).map_err(|e| e.to_string())?;
    let (mac, client_nonce) = match expect(conn, "proof")? {
        Message::Proof { mac, nonce } => (mac, nonce),
        other => return Err(format!("expected a proof, got {}", name(&other))),
    };
    if !verify(token, ROLE_CLIENT, &nonce, &mac) {
        let _ = conn.send(&Message::Refused { reason: "wrong auth token".into() });
        return Err("wrong auth token".into());
    }
    conn.send(&Message::Accepted { mac: prove(token, ROLE_SERVER, &client_nonce) }).map_err(|e| e.to_string())?;
    conn.set_max_frame(DEFAULT_MAX_FRAME);
    match expect(conn, "hello")? {
        Message::Hello { role, node, workers, collection } => Ok(Hello { role, node, workers, collection }),
        other => Err(format!("expected hello, got {}", name(&other))),
    }
}

/// Why a client's handshake failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientError {
    /// The server closed the connection before even challenging us (busy with other
    /// handshakes, or going down): worth another try.
    NoChallenge(Refusal),
    /// Refused, or the exchange broke once it had started.
    Failed(Refusal),
}

impl std::fmt::Display for ClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientError::NoChallenge(r) | ClientError::Failed(r) => f.write_str(r),
        }
    }
}

/// Client side: answer the challenge, check the server's answer, introduce ourselves. Returns
/// the node id from Welcome, or the server's / our own reason for refusing.
pub fn connect(conn: &mut Conn, token: &[u8], hello: Hello) -> Result<u32, ClientError> {
    conn.set_max_frame(HANDSHAKE_MAX_FRAME);
    let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
    let nonce = match conn.recv() {
        Ok(Message::Challenge { nonce }) => nonce,
        Ok(other) => return Err(ClientError::Failed(format!("expected a challenge, got {}", name(&other)))),
        Err(NetError::Wire(w)) => return Err(ClientError::Failed(format!("bad challenge frame: {w}"))),
        Err(e) => return Err(ClientError::NoChallenge(format!("no challenge: {e}"))),
    };
    answer(conn, token, &nonce, hello).map_err(ClientError::Failed)
}

/// The client's handshake after the challenge arrived.
fn answer(conn: &mut Conn, token: &[u8], nonce: &[u8], hello: Hello) -> Result<u32, Refusal> {
    let mine = new_nonce();
    conn.send(&Message::Proof { mac: prove(token, ROLE_CLIENT, nonce), nonce: mine.to_vec() })
        .map_err(|e| e.to_string())?;
    match expect(conn, "answer")? {
        Message::Accepted { mac } if verify(token, ROLE_SERVER, &mine, &mac) => {}
        Message::Accepted { .. } => return Err("the server does not hold our auth token".into()),
        Message::Refused { reason } => return Err(reason),
        other => return Err(format!("expected the server's proof, got {}", name(&other))),
    }
    conn.set_max_frame(DEFAULT_MAX_FRAME);
    conn.send(&Message::Hello { role: hello.role, node: hello.node, workers: hello.workers, collection: hello.collection })
        .map_err(|e| e.to_string())?;
    match expect(conn, "welcome")? {
        Message::Welcome { node_id } => Ok(node_id),
        Message::Refused { reason } => Err(reason),
        other => Err(format!("expected welcome, got {}", name(&other))),
    }
}

/// A message's kind, for error lines (never its content).
pub fn name(m: &Message) -> &'static str {
    match m {
        Message::Challenge { .. } => "Challenge",
        Message::Proof { .. } => "Proof",
        Message::Accepted { .. } => "Accepted",
        Message::Hello { .. } => "Hello",
        Message::Welcome { .. } => "Welcome",
        Message::Refused { .. } => "Refused",
        Message::Credit { .. } => "Credit",
        Message::Units { .. } => "Units",
        Message::Fixture { .. } => "Fixture",
        Message::Results { .. } => "Results",
        Message::Submit { .. } => "Submit",
        Message::Event { .. } => "Event",
        Message::Finish => "Finish",
        Message::Bye => "Bye",
        Message::Heartbeat => "Heartbeat",
        Message::Stop => "Stop",
        Message::Report => "Report",
    }
}
