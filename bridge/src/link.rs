//! The bridge's connection to the coordinator: connect (retrying), authenticate, and a reader
//! thread that applies what the coordinator sends to the node (units into the tasks ring,
//! fixture values into the store, stop/finish onto the ring).

use crate::run::{Outcome, REPORT_WORD};
use mproc_core::handshake::{self, ClientError, Hello};
use mproc_core::net::{connect_retry, Conn, NetError, Writer};
use mproc_core::wire::{Message, Role, HANDSHAKE_MAX_FRAME};
use mproc_core::{Ring, Store};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The main is considered gone after this much silence (it heartbeats every second).
pub const MAIN_SILENCE: Duration = Duration::from_secs(5);

/// What the reader thread shares with the bridge loop.
#[derive(Default)]
pub struct Inbound {
    /// Units asked for and not yet received.
    pub requested: AtomicU32,
    /// Monotonic ns of the last Units frame (for the round-trip estimate).
    pub last_units_ns: AtomicU64,
    pub stopped: AtomicBool,
    pub finished: AtomicBool,
    /// Set when the link ended abnormally; how, in `failure`.
    pub failed: AtomicBool,
    pub failure: Mutex<Option<Outcome>>,
}

pub struct Link {
    pub writer: Writer,
    pub node_id: u32,
    pub handshake: Duration,
}

#[derive(Debug)]
pub enum ConnectError {
    Unreachable(String),
    Refused(String),
}

pub fn connect(addr: SocketAddr, token: &[u8], hello: Hello, timeout: Duration) -> Result<(Link, Conn), ConnectError> {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let stream = connect_retry(&addr, left).map_err(|e| {
            ConnectError::Unreachable(format!("could not connect to the main at {addr} within {} s: {e}", timeout.as_secs()))
        })?;
        let mut conn = Conn::new(stream, HANDSHAKE_MAX_FRAME).map_err(|e| ConnectError::Unreachable(e.to_string()))?;
        let t0 = Instant::now();
        match handshake::connect(&mut conn, token, Hello { role: Role::Node, ..hello.clone() }) {
            Ok(node_id) => return Ok((Link { writer: conn.writer.clone(), node_id, handshake: t0.elapsed() / 3 }, conn)),
            // Closed before even challenging us: the main is busy (too many handshakes at
            // once) or going down; try again while there is time.
            Err(ClientError::NoChallenge(_)) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(50)); // back-off before reconnecting
            }
            Err(e) => return Err(ConnectError::Refused(format!("the main at {addr} refused this node: {e}"))),
        }
    }
}

/// Reads the coordinator's frames until the connection ends.
pub fn read_loop(mut conn: Conn, tasks: Arc<Ring>, store: Arc<Store>, inb: Arc<Inbound>) {
    let _ = conn.set_read_timeout(Some(MAIN_SILENCE));
    let fail = |how: Outcome| {
        *inb.failure.lock().unwrap_or_else(|p| p.into_inner()) = Some(how);
        inb.failed.store(true, Ordering::SeqCst);
        tasks.abort();
    };
    loop {
        match conn.recv() {
            Ok(Message::Units { units }) => {
                let n = units.len() as u32;
                for unit in units {
                    let bytes: Vec<u8> = unit.iter().flat_map(|i| i.to_le_bytes()).collect();
                    if tasks.push(&bytes, None).is_err() {
                        break; // closed: the node is stopping
                    }
                }
                let _ = inb.requested.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |r| Some(r.saturating_sub(n)));
                inb.last_units_ns.store(mproc_core::lease::monotonic_ns(), Ordering::SeqCst);
            }
            Ok(Message::Fixture { key, value }) => {
                if let Err(e) = store.put(&key, &value) {
                    return fail(Outcome::Lost(format!("cannot store fixture {key}: {e}")));
                }
            }
            Ok(Message::Stop) => {
                inb.stopped.store(true, Ordering::SeqCst);
                tasks.abort();
            }
            Ok(Message::Report) => {
                tasks.user_word(REPORT_WORD).fetch_add(1, Ordering::SeqCst);
            }
            Ok(Message::Finish) => {
                inb.finished.store(true, Ordering::SeqCst);
                tasks.close();
            }
            Ok(Message::Heartbeat) => {}
            Ok(Message::Refused { reason }) => return fail(Outcome::Refused(format!("the main refused this node: {reason}"))),
            Ok(other) => return fail(Outcome::Lost(format!("unexpected {} frame from the main", handshake::name(&other)))),
            // After Finish the main may end before we said goodbye: not an error.
            Err(_) if inb.finished.load(Ordering::SeqCst) => return,
            Err(NetError::Timeout) => return fail(Outcome::Lost(format!("lost the main: silent for {} s", MAIN_SILENCE.as_secs()))),
            Err(NetError::Closed) => return fail(Outcome::Lost("lost the main: connection closed".into())),
            Err(e) => return fail(Outcome::Lost(format!("lost the main: {e}"))),
        }
    }
}
