//! The ring across real processes: this test binary re-executes itself as producers and
//! consumers (exec, not a bare fork: forking a multi-threaded test harness is unsafe).
//! Covers exactly-once delivery with many producers/consumers, and SIGKILL at random points.

use mproc_core::{Error, Ring, RingOptions};
use std::collections::HashMap;
use std::io::Write;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const ROLE: &str = "MPROC_TEST_ROLE";

fn spawn(role: &str, ring: &Path, args: &[u64], out: Option<&Path>) -> Child {
    let mut c = Command::new(std::env::current_exe().unwrap());
    c.args(["--exact", "child_entry", "--nocapture", "--test-threads=1"])
        .env(ROLE, role)
        .env("MPROC_RING", ring)
        .env("MPROC_ARGS", args.iter().map(|a| a.to_string()).collect::<Vec<_>>().join(","))
        .stdout(Stdio::null());
    if let Some(o) = out {
        c.env("MPROC_OUT", o);
    }
    c.spawn().unwrap()
}

/// Entry point of the child processes; does nothing when run as a normal test.
#[test]
fn child_entry() {
    let Ok(role) = std::env::var(ROLE) else { return };
    let ring = Ring::attach(Path::new(&std::env::var("MPROC_RING").unwrap())).unwrap();
    let args: Vec<u64> = std::env::var("MPROC_ARGS")
        .unwrap()
        .split(',')
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().unwrap())
        .collect();
    match role.as_str() {
        "producer" => {
            let (start, count, size) = (args[0], args[1], args[2] as usize);
            for k in start..start + count {
                let mut msg = k.to_le_bytes().to_vec();
                msg.resize(size.max(8), (k % 251) as u8);
                ring.push(&msg, None).unwrap();
            }
        }
        "consumer" => {
            // Records every item it finished, one 8-byte O_APPEND write each (atomic), then acks.
            let mut out = std::fs::OpenOptions::new()
                .append(true)
                .create(true)
                .open(std::env::var("MPROC_OUT").unwrap())
                .unwrap();
            let slot = ring.lease_claim().unwrap();
            loop {
                match ring.pop_leased(slot, None) {
                    Ok(Some(v)) => {
                        let k = u64::from_le_bytes(v[..8].try_into().unwrap());
                        assert!(v[8..].iter().all(|&b| b == (k % 251) as u8), "payload of {k} corrupted");
                        ring.lease_set(slot, Some(k)).unwrap();
                        out.write_all(&k.to_le_bytes()).unwrap();
                        ring.ack(slot).unwrap();
                        ring.lease_set(slot, None).unwrap();
                    }
                    Ok(None) => unreachable!(),
                    Err(Error::Closed) => break,
                    Err(e) => panic!("{e}"),
                }
            }
        }
        _ => panic!("unknown role {role}"),
    }
}

fn read_log(path: &Path) -> Vec<u64> {
    std::fs::read(path)
        .unwrap_or_default()
        .chunks_exact(8)
        .map(|c| u64::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("mproc-mp-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn many_producers_many_consumers_exactly_once() {
    let dir = tmp("mpmc");
    let ring = Ring::create(None, &RingOptions { capacity: 256, slot_size: 64, ..Default::default() }).unwrap();
    const PRODUCERS: u64 = 3;
    const PER: u64 = 40_000;
    // Every 97th item is large, to drive the blob arena across processes too.
    let mut producers: Vec<Child> = (0..PRODUCERS).map(|p| spawn("producer", ring.path(), &[p * PER, PER, 24], None)).collect();
    producers.push(spawn("producer", ring.path(), &[PRODUCERS * PER, 300, 9000], None));
    let consumers: Vec<Child> =
        (0..3).map(|c| spawn("consumer", ring.path(), &[], Some(&dir.join(format!("c{c}"))))).collect();
    for mut p in producers {
        assert!(p.wait().unwrap().success());
    }
    ring.close();
    for mut c in consumers {
        assert!(c.wait().unwrap().success());
    }
    let mut seen: HashMap<u64, u32> = HashMap::new();
    for c in 0..3 {
        for k in read_log(&dir.join(format!("c{c}"))) {
            *seen.entry(k).or_default() += 1;
        }
    }
    let total = PRODUCERS * PER + 300;
    assert_eq!(seen.len() as u64, total, "every item delivered");
    assert!(seen.values().all(|&n| n == 1), "no item delivered twice");
    assert_eq!(ring.arena_used_chunks(), 0, "every blob reclaimed");
}

/// Tiny xorshift: reproducible "random" kill points without a dependency.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// 500+ rounds: consumers are SIGKILLed at random moments while items flow. After each death
/// the supervisor heals; every item must end up delivered exactly once (recorded by a
/// consumer) or handed back by heal (and then re-queued unless already recorded), and the
/// ring must never stall.
#[test]
fn sigkill_consumers_at_random_points() {
    let rounds: u64 = std::env::var("MPROC_KILL_ROUNDS").ok().and_then(|s| s.parse().ok()).unwrap_or(500);
    let seed = std::env::var("MPROC_KILL_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0x9E37_79B9_7F4A_7C15u64);
    eprintln!("kill test: {rounds} rounds, seed {seed}");
    let mut rng = Rng(seed);
    let dir = tmp("kill");
    // A small ring, so kills also land while producers wait on a full ring and cells wrap.
    let ring = Ring::create(None, &RingOptions { capacity: 16, slot_size: 64, leases: 64, ..Default::default() }).unwrap();
    const PER_ROUND: u64 = 400;
    let total = rounds * PER_ROUND;
    let mut next_log = 0u32;
    let mut consumers: Vec<(Child, PathBuf)> = Vec::new();
    let mut start_consumer = |consumers: &mut Vec<(Child, PathBuf)>| {
        let log = dir.join(format!("c{next_log}"));
        next_log += 1;
        consumers.push((spawn("consumer", ring.path(), &[], Some(&log)), log));
    };
    for _ in 0..2 {
        start_consumer(&mut consumers);
    }
    let mut handed_back: Vec<u64> = Vec::new();
    let mut kills = 0;
    for round in 0..rounds {
        // The main process is the producer: items of this round (some large).
        let size = if round % 10 == 0 { 5000 } else { 16 };
        let mut producer = spawn("producer", ring.path(), &[round * PER_ROUND, PER_ROUND, size], None);
        // Kill one consumer after a random number of microseconds.
        std::thread::sleep(Duration::from_micros(rng.next() % 3000));
        let victim = (rng.next() % consumers.len() as u64) as usize;
        let (mut child, log) = consumers.swap_remove(victim);
        child.kill().unwrap();
        let status = child.wait().unwrap();
        assert!(status.signal() == Some(9) || status.success(), "{status:?}");
        kills += 1;
        let rep = ring.heal(child.id());
        let recorded: std::collections::HashSet<u64> = read_log(&log).into_iter().collect();
        for item in rep.items {
            let k = u64::from_le_bytes(item[..8].try_into().unwrap());
            handed_back.push(k);
            if !recorded.contains(&k) {
                ring.push(&item, None).unwrap();
            }
        }
        start_consumer(&mut consumers);
        // A stalled ring would leave the producer blocked forever: fail instead of hanging.
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        let status = loop {
            if let Some(st) = producer.try_wait().unwrap() {
                break st;
            }
            if std::time::Instant::now() > deadline {
                let _ = producer.kill();
                panic!("ring stalled: producer of round {round} still blocked after 60 s");
            }
            std::thread::sleep(Duration::from_millis(1));
        };
        assert!(status.success(), "producer failed in round {round}");
    }
    ring.close();
    for (mut c, _) in consumers {
        assert!(c.wait().unwrap().success());
    }
    let mut seen: HashMap<u64, u32> = HashMap::new();
    for i in 0..next_log {
        for k in read_log(&dir.join(format!("c{i}"))) {
            *seen.entry(k).or_default() += 1;
        }
    }
    let missing: Vec<u64> = (0..total).filter(|k| !seen.contains_key(k)).take(10).collect();
    assert!(missing.is_empty(), "items lost: {missing:?}");
    let dups: Vec<(&u64, &u32)> = seen.iter().filter(|(_, &n)| n > 1).take(10).collect();
    assert!(dups.is_empty(), "items delivered twice: {dups:?}");
    assert_eq!(seen.len() as u64, total);
    assert_eq!(ring.arena_used_chunks(), 0, "blobs of killed consumers reclaimed");
    eprintln!("kill test: {kills} kills, {} items handed back", handed_back.len());
    let _ = std::fs::remove_dir_all(&dir);
}
