//! The coordinator: the run's global queue of units, served over TCP to the bridges of worker
//! nodes (and, in standalone orchestration mode, to a remote main). It runs in the main's
//! process (`--as-main`) or as its own process (`pytest_mproc.orchestration.main`).
//!
//! It knows units only as lists of test indices and results only as opaque bytes: scheduling
//! order and replay stay with the main. Per node it remembers every unit handed out and the
//! tests the node last reported running, so a lost node's work can be re-queued by the main
//! (which knows which tests have results) and its running tests reported as crashed.

pub mod events;
mod remote_main;
mod server;
pub mod sink;

pub use events::{Event, EVENT_TAG};
pub use remote_main::RemoteMain;
pub use sink::MainSink;

use crate::net::Outbox;
use crate::wire::Message;
use std::collections::{BTreeMap, VecDeque};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// One entry of the queue: one unit, or a SINGLE_NODE block of units for a single node.
pub type Entry = Vec<Vec<u32>>;

/// How often the coordinator tells nodes it is alive (they give up after a few silent seconds).
pub const HEARTBEAT: Duration = Duration::from_secs(1);
/// A node silent for this long is considered lost (it heartbeats every second).
pub const NODE_SILENCE: Duration = Duration::from_secs(10);

pub(crate) struct NodeSlot {
    name: String,
    workers: u32,
    /// Never blocks: everything below is sent under the state lock.
    writer: Outbox,
    want: u32,
    given: Vec<Vec<u32>>,
    running: Vec<u32>,
    /// Turned away after admission (standalone: collection differs): leaves without events.
    refused: bool,
    /// Standalone mode, main not there yet: the node's collection, checked when it arrives.
    pending_collection: Option<Vec<String>>,
}

impl NodeSlot {
    /// Its collection matched the main's: it may take work.
    fn admitted(&self) -> bool {
        self.pending_collection.is_none() && !self.refused
    }
}

#[derive(Default)]
pub(crate) struct State {
    collection: Option<Arc<Vec<String>>>,
    queue: VecDeque<Entry>,
    nodes: BTreeMap<u32, NodeSlot>,
    fixtures: Vec<(String, Vec<u8>)>,
    next_id: u32,
    rr: u32,
    stopped: bool,
    finished: bool,
    closed: bool,
    main_present: bool,
    main_gone: bool,
    /// Nodes removed from `nodes` whose Left/Lost event is not yet in the main's sink: the
    /// main waiting for every node to be gone must also see the events (wait_nodes_gone).
    leaving: u32,
}

pub(crate) struct Shared {
    state: Mutex<State>,
    sink: Mutex<MainSink>,
    token: Vec<u8>,
    verbose: bool,
    changed: Condvar,
    addr: SocketAddr,
    /// Connections in their handshake right now (bounded, see server::MAX_HANDSHAKES).
    handshaking: std::sync::atomic::AtomicUsize,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn event(&self, ev: Event) {
        self.log(&format!("{ev:?}"));
        self.sink.lock().unwrap_or_else(|p| p.into_inner()).event(&ev);
    }

    fn log(&self, line: &str) {
        if self.verbose {
            eprintln!("[pytest-mproc coordinator {}] {line}", self.addr);
        }
    }

    /// Logged always: a refused or broken peer is something the operator must see.
    fn warn(&self, line: &str) {
        eprintln!("pytest-mproc coordinator {}: {line}", self.addr);
    }
}

/// Hands queued entries to nodes that asked for work, one entry per node per round so nodes
/// share the head of the queue.
pub(crate) fn dispatch(st: &mut State) {
    if st.stopped || st.queue.is_empty() {
        return;
    }
    let ids: Vec<u32> = st.nodes.iter().filter(|(_, n)| n.admitted()).map(|(id, _)| *id).collect();
    if ids.is_empty() {
        return;
    }
    let start = ids.iter().position(|&id| id > st.rr).unwrap_or(0);
    let order: Vec<u32> = ids[start..].iter().chain(ids[..start].iter()).copied().collect();
    let mut out: BTreeMap<u32, Vec<Vec<u32>>> = BTreeMap::new();
    loop {
        let mut gave = false;
        for &id in &order {
            let node = st.nodes.get_mut(&id).unwrap();
            if node.want == 0 {
                continue;
            }
            let Some(entry) = st.queue.pop_front() else { break };
            node.want = node.want.saturating_sub(entry.len() as u32);
            node.given.extend(entry.iter().cloned());
            out.entry(id).or_default().extend(entry);
            st.rr = id;
            gave = true;
        }
        if !gave || st.queue.is_empty() {
            break;
        }
    }
    for (id, units) in out {
        let node = &st.nodes[&id];
        // A failed write shows up as an error in that node's reader thread, which cleans up.
        if node.writer.send(&Message::Units { units }).is_err() {
            node.writer.shutdown();
        }
    }
}

fn broadcast(st: &State, msg: &Message) {
    for node in st.nodes.values() {
        if node.writer.send(msg).is_err() {
            node.writer.shutdown();
        }
    }
}

/// The queue service. Dropping it (or `close`) ends every connection.
pub struct Coordinator {
    shared: Arc<Shared>,
    port: u16,
}

impl Coordinator {
    /// Listens on `addr` for bridges (and, when `collection` is None — standalone mode — for
    /// one remote main whose Hello carries the collection).
    pub fn listen(addr: &str, token: Vec<u8>, collection: Option<Vec<String>>, sink: MainSink) -> std::io::Result<Coordinator> {
        Coordinator::from_listener(TcpListener::bind(addr)?, token, collection, sink)
    }

    /// Like `listen`, on a socket already bound (the main binds before it forks, so its local
    /// node can be forked before any coordinator thread exists).
    pub fn from_listener(listener: TcpListener, token: Vec<u8>, collection: Option<Vec<String>>, sink: MainSink) -> std::io::Result<Coordinator> {
        let local = listener.local_addr()?;
        let standalone = collection.is_none();
        let st = State { collection: collection.map(Arc::new), main_present: !standalone, ..Default::default() };
        let shared = Arc::new(Shared {
            state: Mutex::new(st),
            sink: Mutex::new(sink),
            token,
            verbose: std::env::var_os("PTMPROC_VERBOSE").is_some_and(|v| !v.is_empty() && v != "0"),
            changed: Condvar::new(),
            addr: local,
            handshaking: Default::default(),
        });
        let s = shared.clone();
        std::thread::Builder::new().name("mproc-accept".into()).spawn(move || server::accept_loop(s, listener))?;
        let s = shared.clone();
        std::thread::Builder::new().name("mproc-heartbeat".into()).spawn(move || server::heartbeat_loop(s))?;
        Ok(Coordinator { shared, port: local.port() })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Standalone mode: waits up to `timeout` for the main to have come and gone (the run is
    /// over); true once it has.
    pub fn main_gone_within(&self, timeout: Duration) -> bool {
        let st = self.shared.lock();
        if st.main_gone {
            return true;
        }
        let st = self.shared.changed.wait_timeout(st, timeout).unwrap_or_else(|p| p.into_inner()).0;
        st.main_gone
    }

}

/// What the main does with the run's coordinator, wherever it runs: in the main's process
/// (`Coordinator`) or standalone, reached over TCP (`RemoteMain`).
pub trait MainLink: Send + Sync {
    /// Adds entries to the queue (`front`: re-queued work goes first) and serves waiting nodes.
    fn submit(&self, entries: Vec<Entry>, front: bool);
    /// Publishes a global fixture's value to every node, now and as they join.
    fn publish(&self, key: String, value: Vec<u8>);
    /// No new test starts anywhere (-x, Ctrl-C).
    fn stop(&self);
    /// Every test has a result: nodes finish and leave.
    fn finish(&self);
    /// Blocks until every node has left or `timeout` passed; true when none is left.
    fn wait_nodes_gone(&self, timeout: Duration) -> bool;
    /// Ends the link; an in-process coordinator stops accepting and drops every connection.
    fn close(&self);
    /// Entries waiting to be handed to a node (None: not known here, e.g. a remote coordinator).
    fn queued(&self) -> Option<usize> {
        None
    }
    /// Every node reports what its workers run, with their stacks (SIGQUIT on the main).
    fn request_reports(&self);
    /// What each admitted node last said it was running: (node name, test indices).
    fn running(&self) -> Vec<(String, Vec<u32>)> {
        Vec::new()
    }
}

impl MainLink for Coordinator {
    fn submit(&self, entries: Vec<Entry>, front: bool) {
        submit(&mut self.shared.lock(), entries, front);
    }

    fn queued(&self) -> Option<usize> {
        Some(self.shared.lock().queue.len())
    }

    fn request_reports(&self) {
        broadcast(&self.shared.lock(), &Message::Report);
    }

    fn running(&self) -> Vec<(String, Vec<u32>)> {
        let st = self.shared.lock();
        st.nodes.values().filter(|n| n.admitted()).map(|n| (n.name.clone(), n.running.clone())).collect()
    }

    fn publish(&self, key: String, value: Vec<u8>) {
        publish(&mut self.shared.lock(), key, value);
    }

    fn stop(&self) {
        stop(&mut self.shared.lock());
    }

    fn finish(&self) {
        finish(&mut self.shared.lock());
    }

    fn wait_nodes_gone(&self, timeout: Duration) -> bool {
        let deadline = std::time::Instant::now() + timeout;
        let mut st = self.shared.lock();
        while !st.nodes.is_empty() || st.leaving > 0 {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return false;
            }
            st = self.shared.changed.wait_timeout(st, left).unwrap_or_else(|p| p.into_inner()).0;
        }
        true
    }

    fn close(&self) {
        let mut st = self.shared.lock();
        if st.closed {
            return;
        }
        st.closed = true;
        for node in st.nodes.values() {
            node.writer.close_after_queued(); // after a Stop queued just before
        }
        drop(st);
        // Wake the accept loop so it sees `closed`.
        let _ = TcpStream::connect_timeout(&wake_addr(self.shared.addr), Duration::from_millis(200));
    }
}

impl Drop for Coordinator {
    fn drop(&mut self) {
        self.close();
    }
}

fn wake_addr(a: SocketAddr) -> SocketAddr {
    if a.ip().is_unspecified() {
        SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), a.port())
    } else {
        a
    }
}

pub(crate) fn submit(st: &mut State, entries: Vec<Entry>, front: bool) {
    let entries = entries.into_iter().filter(|e| !e.is_empty());
    if front {
        let v: Vec<Entry> = entries.collect();
        for e in v.into_iter().rev() {
            st.queue.push_front(e);
        }
    } else {
        st.queue.extend(entries);
    }
    dispatch(st);
}

pub(crate) fn publish(st: &mut State, key: String, value: Vec<u8>) {
    let msg = Message::Fixture { key: key.clone(), value: value.clone() };
    broadcast(st, &msg);
    st.fixtures.push((key, value));
}

pub(crate) fn stop(st: &mut State) {
    if !st.stopped {
        st.stopped = true;
        broadcast(st, &Message::Stop);
    }
}

pub(crate) fn finish(st: &mut State) {
    if !st.finished {
        st.finished = true;
        broadcast(st, &Message::Finish);
    }
}

/// The first differing test ids between two collections, for a refusal message.
pub fn collection_diff(main: &[String], node: &[String]) -> Option<String> {
    if main == node {
        return None;
    }
    let a: std::collections::HashSet<&String> = main.iter().collect();
    let b: std::collections::HashSet<&String> = node.iter().collect();
    let mut parts = Vec::new();
    let only_main: Vec<&str> = main.iter().filter(|x| !b.contains(x)).take(3).map(|s| s.as_str()).collect();
    let only_node: Vec<&str> = node.iter().filter(|x| !a.contains(x)).take(3).map(|s| s.as_str()).collect();
    if !only_main.is_empty() {
        parts.push(format!("missing on the node: {}", only_main.join(", ")));
    }
    if !only_node.is_empty() {
        parts.push(format!("only on the node: {}", only_node.join(", ")));
    }
    if parts.is_empty() {
        let i = main.iter().zip(node).position(|(x, y)| x != y).unwrap_or(0);
        parts.push(format!("same tests in a different order (first difference at #{i}: {})", main[i]));
    }
    Some(format!(
        "collection differs from the main's ({} tests here, {} on the main): {}",
        node.len(),
        main.len(),
        parts.join("; ")
    ))
}
