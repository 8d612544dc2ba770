//! The main's side of standalone orchestration mode: the pytest main connects to a coordinator
//! running as its own process, submits units and fixture values, and receives node results and
//! events into its results ring (the same items an in-process coordinator would push).

use super::events::Event;
use super::MainLink;
use crate::handshake::{self, Hello};
use crate::net::{connect_retry, Conn, NetError, Writer};
use crate::wire::{Message, Role, HANDSHAKE_MAX_FRAME};
use crate::Ring;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

pub struct RemoteMain {
    writer: Writer,
}

impl RemoteMain {
    pub fn connect(addr: SocketAddr, token: &[u8], collection: Vec<String>, ring: Arc<Ring>, timeout: Duration) -> Result<RemoteMain, String> {
        let stream = connect_retry(&addr, timeout).map_err(|e| format!("cannot reach the coordinator at {addr}: {e}"))?;
        let mut conn = Conn::new(stream, HANDSHAKE_MAX_FRAME).map_err(|e| e.to_string())?;
        let hello = Hello { role: Role::Main, node: "main".into(), workers: 0, collection };
        handshake::connect(&mut conn, token, hello).map_err(|r| format!("the coordinator at {addr} refused us: {r}"))?;
        let _ = conn.set_read_timeout(None);
        let writer = conn.writer.clone();
        std::thread::Builder::new()
            .name("mproc-main-link".into())
            .spawn(move || relay(conn, ring))
            .map_err(|e| e.to_string())?;
        Ok(RemoteMain { writer })
    }

    fn send(&self, msg: Message) {
        let _ = self.writer.send(&msg);
    }
}

impl MainLink for RemoteMain {
    fn submit(&self, entries: Vec<super::Entry>, front: bool) {
        self.send(Message::Submit { entries, front });
    }
    fn publish(&self, key: String, value: Vec<u8>) {
        self.send(Message::Fixture { key, value });
    }
    fn stop(&self) {
        self.send(Message::Stop);
    }
    fn finish(&self) {
        self.send(Message::Finish);
    }
    fn request_reports(&self) {
        self.send(Message::Report);
    }
    /// The standalone coordinator keeps its nodes; the main does not wait for them.
    fn wait_nodes_gone(&self, _timeout: Duration) -> bool {
        true
    }
    /// Leaves the coordinator (which then ends its run).
    fn close(&self) {
        self.send(Message::Bye);
        self.writer.shutdown();
    }
}

fn relay(mut conn: Conn, ring: Arc<Ring>) {
    let reason = loop {
        match conn.recv() {
            Ok(Message::Results { batch, .. }) => {
                for item in batch {
                    if ring.push(&item, None).is_err() {
                        return; // the main finished
                    }
                }
            }
            Ok(Message::Event { json }) => {
                if ring.push(&Event::ring_item(&json), None).is_err() {
                    return;
                }
            }
            Ok(Message::Heartbeat) => {}
            Ok(other) => break format!("unexpected {} frame from the coordinator", handshake::name(&other)),
            Err(NetError::Closed) => break "the coordinator closed the connection".into(),
            Err(e) => break e.to_string(),
        }
    };
    let ev = Event::CoordinatorLost { reason };
    let _ = ring.push(&Event::ring_item(&ev.to_json()), Some(Duration::from_secs(5)));
}
