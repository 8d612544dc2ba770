//! Coordinator + bridge over real TCP on loopback, with threads standing in for the node's
//! worker processes: every unit's result reaches the main exactly once, fixtures reach the
//! node store before units, and wrong tokens, different collections and lost nodes are handled.

use mproc_bridge::{run, BridgeConfig, Outcome, READY_WORD};
use mproc_core::coordinator::{Coordinator, MainLink, MainSink, EVENT_TAG};
use mproc_core::handshake::{self, Hello};
use mproc_core::net::Conn;
use mproc_core::wire::{Message, Role, HANDSHAKE_MAX_FRAME};
use mproc_core::{Ring, RingOptions, Store};
use std::collections::HashMap;
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

fn ring(cap: u32) -> Arc<Ring> {
    Arc::new(Ring::create(None, &RingOptions { capacity: cap, slot_size: 256, leases: 16, arena_bytes: 1 << 20, chunk_size: 4096 }).unwrap())
}

fn collection(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("test_mod.py::test_{i}")).collect()
}

struct Node {
    bridge: std::thread::JoinHandle<Outcome>,
    workers: Vec<std::thread::JoinHandle<()>>,
    results: Arc<Ring>,
    store: Arc<Store>,
}

/// A node whose "workers" answer unit [i, ...] with one result b"R"+i per test.
fn start_node(port: u16, token: &[u8], coll: Vec<String>, workers: usize) -> Node {
    let tasks = ring(1024);
    let results = ring(1024);
    let store = Arc::new(Store::create(64, 64 << 20).unwrap()); // sparse: costs only what is written
    tasks.user_word(READY_WORD).store(1, Ordering::SeqCst);
    let cfg = BridgeConfig {
        addr: SocketAddr::from(([127, 0, 0, 1], port)),
        token: token.to_vec(),
        name: "n".into(),
        workers: workers as u32,
        collection: coll,
        tasks: tasks.clone(),
        results: results.clone(),
        store: store.clone(),
        connect_timeout: Duration::from_secs(10),
    };
    let bridge = std::thread::spawn(move || run(cfg));
    let ws = (0..workers)
        .map(|_| {
            let (tasks, results) = (tasks.clone(), results.clone());
            std::thread::spawn(move || {
                let slot = tasks.lease_claim().unwrap();
                while let Ok(Some(unit)) = tasks.pop_leased(slot, None) {
                    for idx in unit.chunks(4).map(|c| u32::from_le_bytes(c.try_into().unwrap())) {
                        tasks.lease_set(slot, Some(idx as u64)).unwrap();
                        let mut r = b"R".to_vec();
                        r.extend_from_slice(&idx.to_le_bytes());
                        results.push(&r, None).unwrap();
                    }
                    tasks.lease_set(slot, None).unwrap();
                }
            })
        })
        .collect();
    Node { bridge, workers: ws, results, store }
}

impl Node {
    /// Like the node main: once every worker has exited, close the results ring.
    fn finish(self) -> (Outcome, Arc<Store>) {
        for w in self.workers {
            w.join().unwrap();
        }
        self.results.close();
        (self.bridge.join().unwrap(), self.store)
    }
}

enum Item {
    Result(u32),
    Event(serde_json::Value),
}

fn next(main: &Ring) -> Item {
    let data = main.pop(Some(Duration::from_secs(30))).unwrap().expect("the main got nothing for 30 s");
    if data[0] == EVENT_TAG {
        Item::Event(serde_json::from_slice(&data[1..]).unwrap())
    } else {
        Item::Result(u32::from_le_bytes(data[1..5].try_into().unwrap()))
    }
}

/// Waits for `n` distinct results (events are skipped); panics on a duplicate.
fn results(main: &Ring, n: usize) -> std::collections::HashSet<u32> {
    let mut seen = std::collections::HashSet::new();
    while seen.len() < n {
        if let Item::Result(i) = next(main) {
            assert!(seen.insert(i), "result {i} arrived twice");
        }
    }
    seen
}

fn next_event(main: &Ring) -> serde_json::Value {
    loop {
        if let Item::Event(e) = next(main) {
            return e;
        }
    }
}

#[test]
fn two_nodes_every_test_once_and_fixtures_before_units() {
    let token = b"secret token".to_vec();
    let coll = collection(300);
    let main = ring(4096);
    let coord = Coordinator::listen("127.0.0.1:0", token.clone(), Some(coll.clone()), MainSink::Ring(main.clone())).unwrap();
    coord.publish("global:db".into(), b"Vvalue".to_vec());
    let a = start_node(coord.port(), &token, coll.clone(), 2);
    let b = start_node(coord.port(), &token, coll.clone(), 2);
    // Units, with a SINGLE_NODE block of three.
    let mut entries: Vec<Vec<Vec<u32>>> = (0..297u32).map(|i| vec![vec![i]]).collect();
    entries.insert(5, vec![vec![297], vec![298], vec![299]]);
    coord.submit(entries, false);
    let mut seen: HashMap<u32, usize> = HashMap::new();
    let mut joined = 0;
    while seen.len() < 300 {
        match next(&main) {
            Item::Result(i) => *seen.entry(i).or_default() += 1,
            Item::Event(e) if e["ev"] == "joined" => joined += 1,
            Item::Event(e) => panic!("unexpected event {e}"),
        }
    }
    assert_eq!(joined, 2);
    assert!(seen.values().all(|&c| c == 1), "a result arrived twice");
    coord.finish();
    for node in [a, b] {
        let (outcome, store) = node.finish();
        assert_eq!(outcome, Outcome::Finished);
        assert_eq!(store.get("global:db"), Some(&b"Vvalue"[..]));
    }
    assert!(coord.wait_nodes_gone(Duration::from_secs(10)));
    let left: Vec<_> = (0..2).map(|_| next_event(&main)).collect();
    assert!(left.iter().all(|e| e["ev"] == "left"), "{left:?}");
}

#[test]
fn wrong_token_is_refused_before_anything_else() {
    let coll = collection(3);
    let main = ring(64);
    let coord = Coordinator::listen("127.0.0.1:0", b"right".to_vec(), Some(coll.clone()), MainSink::Ring(main.clone())).unwrap();
    let node = start_node(coord.port(), b"wrong", coll, 1);
    let (outcome, _) = node.finish();
    match outcome {
        Outcome::Refused(m) => assert!(m.contains("wrong auth token"), "{m}"),
        o => panic!("{o:?}"),
    }
    let ev = next_event(&main);
    assert_eq!(ev["ev"], "refused");
    assert_eq!(ev["reason"], "wrong auth token");
    assert!(coord.wait_nodes_gone(std::time::Duration::ZERO), "a refused node must not be kept");
}

#[test]
fn a_different_collection_is_refused_naming_tests() {
    let main = ring(64);
    let coord = Coordinator::listen("127.0.0.1:0", b"t".to_vec(), Some(collection(5)), MainSink::Ring(main.clone())).unwrap();
    let mut theirs = collection(5);
    theirs[3] = "test_mod.py::test_renamed".into();
    let (outcome, _) = start_node(coord.port(), b"t", theirs, 1).finish();
    let Outcome::Refused(m) = outcome else { panic!() };
    assert!(m.contains("missing on the node: test_mod.py::test_3"), "{m}");
    assert!(m.contains("only on the node: test_mod.py::test_renamed"), "{m}");
    assert_eq!(next_event(&main)["ev"], "refused");
}

#[test]
fn a_lost_node_hands_back_its_units_and_running_tests() {
    let token = b"t".to_vec();
    let coll = collection(10);
    let main = ring(64);
    let coord = Coordinator::listen("127.0.0.1:0", token.clone(), Some(coll.clone()), MainSink::Ring(main.clone())).unwrap();
    coord.submit((0..10u32).map(|i| vec![vec![i]]).collect(), false);
    // A hand-driven node: takes three units, reports one result and one running test, vanishes.
    let stream = TcpStream::connect(("127.0.0.1", coord.port())).unwrap();
    let mut conn = Conn::new(stream, HANDSHAKE_MAX_FRAME).unwrap();
    handshake::connect(&mut conn, &token, Hello { role: Role::Node, node: "doomed".into(), workers: 1, collection: coll }).unwrap();
    conn.send(&Message::Credit { units: 3 }).unwrap();
    let units = loop {
        match conn.recv().unwrap() {
            Message::Units { units } => break units,
            _ => continue,
        }
    };
    assert_eq!(units, vec![vec![0], vec![1], vec![2]]);
    conn.send(&Message::Results { batch: vec![b"R\0\0\0\0".to_vec()], running: vec![1] }).unwrap();
    assert!(matches!(next(&main), Item::Event(e) if e["ev"] == "joined"));
    assert!(matches!(next(&main), Item::Result(0)));
    drop(conn);
    let ev = next_event(&main);
    assert_eq!(ev["ev"], "lost");
    assert_eq!(ev["units"], serde_json::json!([[0], [1], [2]]));
    assert_eq!(ev["running"], serde_json::json!([1]));
}

#[test]
fn standalone_coordinator_relays_between_a_remote_main_and_nodes() {
    use mproc_core::coordinator::RemoteMain;
    let token = b"t".to_vec();
    let coll = collection(50);
    let coord = Coordinator::listen("127.0.0.1:0", token.clone(), None, MainSink::Pending(Vec::new())).unwrap();
    // A node first (it waits for the main), then the main.
    let node = start_node(coord.port(), &token, coll.clone(), 2);
    let main = ring(1024);
    let addr = SocketAddr::from(([127, 0, 0, 1], coord.port()));
    let link = RemoteMain::connect(addr, &token, coll, main.clone(), Duration::from_secs(5)).unwrap();
    link.submit((0..50u32).map(|i| vec![vec![i]]).collect(), false);
    results(&main, 50);
    link.finish();
    let (outcome, _) = node.finish();
    assert_eq!(outcome, Outcome::Finished);
    link.close();
    assert!(coord.main_gone_within(Duration::from_secs(10)), "the coordinator ends with its main");
}

#[test]
fn malformed_or_oversized_frames_drop_only_that_connection() {
    use std::io::Write;
    let token = b"t".to_vec();
    let coll = collection(4);
    let main = ring(64);
    let coord = Coordinator::listen("127.0.0.1:0", token.clone(), Some(coll.clone()), MainSink::Ring(main.clone())).unwrap();
    // Before authentication: a frame announcing 1 GiB is refused from its header alone.
    let mut raw = TcpStream::connect(("127.0.0.1", coord.port())).unwrap();
    raw.write_all(&(1u32 << 30).to_le_bytes()).unwrap();
    let ev = next_event(&main);
    assert_eq!(ev["ev"], "refused");
    assert!(ev["reason"].as_str().unwrap().contains("exceeds the limit of 512"), "{ev}");
    // After authentication: garbage where a frame should be -> that node is dropped as lost.
    let stream = TcpStream::connect(("127.0.0.1", coord.port())).unwrap();
    let mut conn = Conn::new(stream, HANDSHAKE_MAX_FRAME).unwrap();
    handshake::connect(&mut conn, &token, Hello { role: Role::Node, node: "garbled".into(), workers: 1, collection: coll.clone() }).unwrap();
    assert_eq!(next_event(&main)["ev"], "joined");
    let mut bad = 6u32.to_le_bytes().to_vec();
    bad.extend_from_slice(&mproc_core::wire::WIRE_VERSION.to_le_bytes());
    bad.extend_from_slice(&[0xff, 0xff, 0xff, 0xff]);
    conn_raw_write(&conn, &bad);
    let ev = next_event(&main);
    assert_eq!(ev["ev"], "lost");
    assert!(ev["reason"].as_str().unwrap().contains("malformed frame"), "{ev}");
    // The coordinator still serves a proper node.
    coord.submit((0..4u32).map(|i| vec![vec![i]]).collect(), false);
    let node = start_node(coord.port(), &token, coll, 1);
    results(&main, 4);
    coord.finish();
    assert_eq!(node.finish().0, Outcome::Finished);
}

/// Writes raw bytes on an authenticated connection (bypassing the frame encoder).
fn conn_raw_write(conn: &Conn, bytes: &[u8]) {
    conn.writer.send_raw(bytes).unwrap();
}

#[test]
fn silent_connections_are_bounded_and_do_not_block_the_service_for_good() {
    use std::io::Read;
    let token = b"t".to_vec();
    let coll = collection(2);
    let main = ring(256);
    let coord = Coordinator::listen("127.0.0.1:0", token.clone(), Some(coll.clone()), MainSink::Ring(main.clone())).unwrap();
    // 64 peers that connect and never answer the challenge hold every handshake slot...
    let mut silent: Vec<TcpStream> = (0..64).map(|_| TcpStream::connect(("127.0.0.1", coord.port())).unwrap()).collect();
    for s in &mut silent {
        let mut buf = [0u8; 1];
        s.read_exact(&mut buf).unwrap(); // its challenge arrived: it is in its handshake
    }
    // ...so the next one is dropped at once rather than given a thread.
    let mut extra = TcpStream::connect(("127.0.0.1", coord.port())).unwrap();
    extra.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = [0u8; 64];
    assert_eq!(extra.read(&mut buf).unwrap(), 0, "dropped without a challenge");
    // Once they go away, nodes are served again.
    drop(silent);
    coord.submit(vec![vec![vec![0]], vec![vec![1]]], false);
    let node = start_node(coord.port(), &token, coll, 1);
    results(&main, 2);
    coord.finish();
    assert_eq!(node.finish().0, Outcome::Finished);
}

#[test]
fn a_node_that_stops_reading_delays_no_other_node() {
    // Before sends left the coordinator's lock, publishing to a node that does not read
    // blocked the whole coordinator (up to the 30 s write timeout): no heartbeats, no units,
    // and healthy nodes gave the main up after 5 s of silence.
    let token = b"t".to_vec();
    let coll = collection(200);
    let main = ring(1024);
    let coord = Coordinator::listen("127.0.0.1:0", token.clone(), Some(coll.clone()), MainSink::Ring(main.clone())).unwrap();
    let stream = TcpStream::connect(("127.0.0.1", coord.port())).unwrap();
    let mut stuck = Conn::new(stream, HANDSHAKE_MAX_FRAME).unwrap();
    handshake::connect(&mut stuck, &token, Hello { role: Role::Node, node: "stuck".into(), workers: 1, collection: coll.clone() }).unwrap();
    let healthy = start_node(coord.port(), &token, coll, 2);
    let mut joined = 0;
    while joined < 2 {
        if next_event(&main)["ev"] == "joined" {
            joined += 1;
        }
    }
    // 24 MB of fixture values: far more than the stuck node's socket buffers take. The stuck
    // node keeps heartbeating (it is not silent, it just does not read).
    let beat = {
        let w = stuck.writer.clone();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let s = stop.clone();
        (std::thread::spawn(move || {
            while !s.load(Ordering::SeqCst) && w.send(&Message::Heartbeat).is_ok() {
                std::thread::sleep(Duration::from_millis(500)); // a heartbeat period, not a synchronisation
            }
        }), stop)
    };
    for k in 0..3 {
        coord.publish(format!("global:big{k}"), vec![k as u8; 8 << 20]);
    }
    coord.submit((0..200u32).map(|i| vec![vec![i]]).collect(), false);
    results(&main, 200);
    coord.finish();
    let (outcome, store) = healthy.finish();
    assert_eq!(outcome, Outcome::Finished, "the healthy node must finish the run");
    assert_eq!(store.get("global:big2").map(|v| v.len()), Some(8 << 20));
    beat.1.store(true, Ordering::SeqCst);
    beat.0.join().unwrap();
}
