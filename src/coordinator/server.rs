//! The coordinator's threads: accepting connections, one reader per peer, heartbeats.

use super::{collection_diff, dispatch, finish, publish, stop, submit, Event, MainSink, NodeSlot, Shared, HEARTBEAT, NODE_SILENCE};
use crate::handshake::{self, Hello};
use crate::net::{Conn, NetError, Outbox};
use crate::wire::{Message, Role, HANDSHAKE_MAX_FRAME};
use std::net::TcpListener;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// Connections allowed to be in their handshake at once.
const MAX_HANDSHAKES: usize = 64;

pub(super) fn accept_loop(shared: Arc<Shared>, listener: TcpListener) {
    for stream in listener.incoming() {
        if shared.lock().closed {
            return;
        }
        let Ok(stream) = stream else { continue };
        // Each unauthenticated peer costs a thread for up to the handshake timeout: bound them,
        // so a flood of connections cannot exhaust the main.
        if shared.handshaking.fetch_add(1, Ordering::SeqCst) >= MAX_HANDSHAKES {
            shared.handshaking.fetch_sub(1, Ordering::SeqCst);
            shared.warn("too many connections waiting for their handshake; dropping one");
            continue;
        }
        let s = shared.clone();
        let _ = std::thread::Builder::new().name("mproc-peer".into()).spawn(move || {
            let Ok(conn) = Conn::new(stream, HANDSHAKE_MAX_FRAME) else {
                s.handshaking.fetch_sub(1, Ordering::SeqCst);
                return;
            };
            serve_peer(s, conn);
        });
    }
}

pub(super) fn heartbeat_loop(shared: Arc<Shared>) {
    loop {
        std::thread::sleep(HEARTBEAT); // a period, not a synchronisation
        let st = shared.lock();
        if st.closed {
            return;
        }
        for node in st.nodes.values() {
            if node.writer.send(&Message::Heartbeat).is_err() {
                node.writer.shutdown();
            }
        }
    }
}

fn serve_peer(shared: Arc<Shared>, mut conn: Conn) {
    let accepted = handshake::accept(&mut conn, &shared.token);
    shared.handshaking.fetch_sub(1, Ordering::SeqCst);
    let hello = match accepted {
        Ok(h) => h,
        Err(reason) => {
            shared.warn(&format!("refused {}: {reason}", conn.peer));
            shared.event(Event::Refused { peer: conn.peer.clone(), name: String::new(), reason });
            return;
        }
    };
    match hello.role {
        Role::Node => serve_node(shared, conn, hello),
        Role::Main => serve_main(shared, conn, hello),
    }
}

fn refuse(shared: &Shared, conn: &Conn, name: &str, reason: String) {
    let _ = conn.send(&Message::Refused { reason: reason.clone() });
    shared.warn(&format!("refused node {name} ({}): {reason}", conn.peer));
    shared.event(Event::Refused { peer: conn.peer.clone(), name: name.to_string(), reason });
}

fn serve_node(shared: Arc<Shared>, mut conn: Conn, hello: Hello) {
    let (id, checked);
    {
        let mut st = shared.lock();
        if let Some(main) = &st.collection {
            if let Some(reason) = collection_diff(main, &hello.collection) {
                drop(st);
                return refuse(&shared, &conn, &hello.node, reason);
            }
        }
        st.next_id += 1;
        id = st.next_id;
        checked = st.collection.is_some();
        let Ok(outbox) = Outbox::start(conn.writer.clone()) else { return };
        // Welcome, the fixtures published so far and the run's state are queued under the
        // lock, so no Units frame can overtake them (the outbox keeps the order).
        let mut ok = outbox.send(&Message::Welcome { node_id: id }).is_ok();
        for (key, value) in &st.fixtures {
            ok &= outbox.send(&Message::Fixture { key: key.clone(), value: value.clone() }).is_ok();
        }
        if st.stopped {
            ok &= outbox.send(&Message::Stop).is_ok();
        }
        if st.finished {
            ok &= outbox.send(&Message::Finish).is_ok();
        }
        if !ok {
            return;
        }
        st.nodes.insert(
            id,
            NodeSlot {
                name: hello.node.clone(),
                workers: hello.workers,
                writer: outbox,
                want: 0,
                given: Vec::new(),
                running: Vec::new(),
                refused: false,
                pending_collection: if checked { None } else { Some(hello.collection.clone()) },
            },
        );
    }
    // (A node that arrived before a standalone coordinator's main joins when the main does.)
    if checked {
        shared.event(Event::Joined { node: id, name: hello.node.clone(), workers: hello.workers, peer: conn.peer.clone() });
    }
    let _ = conn.set_read_timeout(Some(NODE_SILENCE));
    let (clean, reason) = node_loop(&shared, &mut conn, id);
    // Out of `nodes` at once (no more work is handed to it), but counted as leaving until its
    // event is in the main's sink, so a main that waits for the nodes to be gone sees it.
    let slot = {
        let mut st = shared.lock();
        let slot = st.nodes.remove(&id);
        if slot.is_some() {
            st.leaving += 1;
        }
        slot
    };
    let Some(slot) = slot else { return };
    if !slot.refused {
        if clean {
            let tests = slot.given.iter().map(|u| u.len() as u32).sum();
            shared.event(Event::Left { node: id, name: slot.name, tests });
        } else {
            shared.warn(&format!("lost node {} ({}): {reason}", slot.name, conn.peer));
            shared.event(Event::Lost { node: id, name: slot.name, reason, units: slot.given, running: slot.running });
        }
    }
    shared.lock().leaving -= 1;
    shared.changed.notify_all();
}

/// Reads a node's frames until it leaves; (left cleanly, why not).
fn node_loop(shared: &Shared, conn: &mut Conn, id: u32) -> (bool, String) {
    loop {
        match conn.recv() {
            Ok(Message::Credit { units }) => {
                let mut st = shared.lock();
                if let Some(n) = st.nodes.get_mut(&id) {
                    n.want = n.want.saturating_add(units);
                }
                dispatch(&mut st);
            }
            Ok(Message::Results { batch, running }) => {
                if !batch.is_empty() {
                    shared.sink.lock().unwrap_or_else(|p| p.into_inner()).results(batch);
                }
                let mut st = shared.lock();
                if let Some(n) = st.nodes.get_mut(&id) {
                    if n.running != running {
                        if shared.verbose {
                            shared.log(&format!("node {} ({}) running {running:?}", id, n.name));
                        }
                        n.running = running;
                    }
                }
            }
            Ok(Message::Heartbeat) => {}
            Ok(Message::Bye) => return (true, String::new()),
            Ok(other) => return (false, format!("unexpected {} frame from a node", handshake::name(&other))),
            Err(NetError::Closed) => return (false, "connection closed".into()),
            Err(NetError::Timeout) => return (false, format!("silent for {} s", NODE_SILENCE.as_secs())),
            Err(e) => return (false, e.to_string()),
        }
    }
}

fn serve_main(shared: Arc<Shared>, mut conn: Conn, hello: Hello) {
    let collection = Arc::new(hello.collection);
    let mut turned_away = Vec::new();
    let mut joined = Vec::new();
    {
        let mut st = shared.lock();
        if st.main_present || st.main_gone {
            drop(st);
            let reason = "this coordinator already serves a main".to_string();
            let _ = conn.send(&Message::Refused { reason: reason.clone() });
            shared.warn(&format!("refused a second main ({}): {reason}", conn.peer));
            return;
        }
        st.main_present = true;
        st.collection = Some(collection.clone());
        let Ok(outbox) = Outbox::start(conn.writer.clone()) else { return };
        if outbox.send(&Message::Welcome { node_id: 0 }).is_err() {
            return;
        }
        let pending = std::mem::replace(&mut *shared.sink.lock().unwrap_or_else(|p| p.into_inner()), MainSink::Remote(outbox.clone()));
        if let MainSink::Pending(events) = pending {
            for json in events {
                let _ = outbox.send(&Message::Event { json });
            }
        }
        // Nodes that came before the main are checked now.
        for (id, node) in st.nodes.iter_mut() {
            let Some(theirs) = node.pending_collection.take() else { continue };
            match collection_diff(&collection, &theirs) {
                Some(reason) => {
                    node.refused = true;
                    let _ = node.writer.send(&Message::Refused { reason: reason.clone() });
                    node.writer.close_after_queued();
                    turned_away.push((node.name.clone(), reason));
                }
                None => joined.push(Event::Joined { node: *id, name: node.name.clone(), workers: node.workers, peer: String::new() }),
            }
        }
    }
    for (name, reason) in turned_away {
        shared.warn(&format!("refused node {name}: {reason}"));
        shared.event(Event::Refused { peer: String::new(), name, reason });
    }
    for ev in joined {
        shared.event(ev);
    }
    let _ = conn.set_read_timeout(None);
    let reason = loop {
        match conn.recv() {
            Ok(Message::Submit { entries, front }) => submit(&mut shared.lock(), entries, front),
            Ok(Message::Fixture { key, value }) => publish(&mut shared.lock(), key, value),
            Ok(Message::Stop) => stop(&mut shared.lock()),
            Ok(Message::Finish) => finish(&mut shared.lock()),
            Ok(Message::Report) => super::broadcast(&shared.lock(), &Message::Report),
            Ok(Message::Heartbeat) => {}
            Ok(Message::Bye) => break String::new(),
            Ok(other) => break format!("unexpected {} frame from the main", handshake::name(&other)),
            Err(e) => break e.to_string(),
        }
    };
    if !reason.is_empty() {
        shared.warn(&format!("the main left: {reason}"));
    }
    // Without its main the run is over: every node stops and is disconnected.
    let mut st = shared.lock();
    stop(&mut st);
    for node in st.nodes.values() {
        node.writer.close_after_queued(); // after the Stop just queued
    }
    st.main_gone = true;
    shared.changed.notify_all();
}
