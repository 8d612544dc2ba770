//! The bridge loop: forwards the node's results upstream in batches (with the tests its workers
//! are running), keeps the tasks ring filled by credits, and ends when the node is done or the
//! main is gone.

use crate::link::{self, ConnectError, Inbound};
use crate::prefetch::Prefetch;
use mproc_core::handshake::Hello;
use mproc_core::lease::monotonic_ns;
use mproc_core::wire::{Message, Role};
use mproc_core::{Ring, Store};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Header word of the tasks ring the node main sets to 1 once its node fixtures are set up:
/// until then the bridge asks for no work.
pub const READY_WORD: usize = 1;
/// Header word of the tasks ring the bridge increments each time the main asks for a report
/// of what the workers run (SIGQUIT on the main); the node's process makes it.
pub const REPORT_WORD: usize = 2;

/// The loop's poll period while no result comes: from NAP_MIN, doubling up to NAP_MAX (so
/// results, credits and the running set are looked at at least every NAP_MAX).
const NAP_MIN: Duration = Duration::from_micros(250);
const NAP_MAX: Duration = Duration::from_millis(4);
/// Results sent in one frame at most (bytes); more goes in the next frame.
const BATCH_BYTES: usize = 4 << 20;
/// Results taken off the ring per call (`Ring::try_pop_batch`).
const POP_BATCH: usize = 64;

pub struct BridgeConfig {
    pub addr: SocketAddr,
    pub token: Vec<u8>,
    pub name: String,
    pub workers: u32,
    pub collection: Vec<String>,
    pub tasks: Arc<Ring>,
    pub results: Arc<Ring>,
    pub store: Arc<Store>,
    pub connect_timeout: Duration,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The run finished (or stopped) and the node's last results went upstream.
    Finished,
    /// No connection within the timeout.
    Unreachable(String),
    /// The main turned this node away (token, collection).
    Refused(String),
    /// The main vanished mid-run.
    Lost(String),
}

impl Outcome {
    pub fn exit_code(&self) -> i32 {
        match self {
            Outcome::Finished => 0,
            Outcome::Unreachable(_) => 10,
            Outcome::Refused(_) => 11,
            Outcome::Lost(_) => 12,
        }
    }
    pub fn message(&self) -> String {
        match self {
            Outcome::Finished => "finished".into(),
            Outcome::Unreachable(m) | Outcome::Refused(m) | Outcome::Lost(m) => m.clone(),
        }
    }
}

pub fn run(cfg: BridgeConfig) -> Outcome {
    let hello = Hello { role: Role::Node, node: cfg.name.clone(), workers: cfg.workers, collection: cfg.collection.clone() };
    let (link, conn) = match link::connect(cfg.addr, &cfg.token, hello, cfg.connect_timeout) {
        Ok(x) => x,
        Err(ConnectError::Unreachable(m)) => {
            cfg.tasks.abort();
            return Outcome::Unreachable(m);
        }
        Err(ConnectError::Refused(m)) => {
            cfg.tasks.abort();
            return Outcome::Refused(m);
        }
    };
    let inb = Arc::new(Inbound::default());
    {
        let (tasks, store, inb) = (cfg.tasks.clone(), cfg.store.clone(), inb.clone());
        std::thread::Builder::new()
            .name("mproc-bridge-in".into())
            .spawn(move || link::read_loop(conn, tasks, store, inb))
            .expect("spawn the bridge reader");
    }
    let mut prefetch = Prefetch::new(cfg.workers, link.handshake);
    let send = |m: &Message| link.writer.send(m).is_ok();
    let mut running: Vec<u32> = Vec::new();
    let mut batch: Vec<Vec<u8>> = Vec::new();
    let mut pending: VecDeque<Vec<u8>> = VecDeque::new();
    let mut pending_bytes = 0usize;
    let mut last_result = Instant::now();
    let mut last_sent = Instant::now();
    let mut credit_sent_ns = 0u64;
    let mut node_done = false;
    let mut nap = NAP_MIN;
    loop {
        // Results: take whatever is there. When nothing is, nap rather than sleep on the ring's
        // futex: a futex sleeper makes every worker's push pay a wake-up syscall (~18 us on our
        // 2-vCPU VMs), which single-host runs avoid the same way (see single_host.py). A ring
        // batch at a time: blocked workers get one wake-up per batch, not per result.
        while pending_bytes < BATCH_BYTES && !node_done {
            let (items, stopped) = cfg.results.try_pop_batch(POP_BATCH);
            let popped = items.len();
            for item in items {
                pending_bytes += item.len();
                pending.push_back(item);
            }
            if stopped.is_some() {
                node_done = true; // closed by the node main (every worker has exited) and drained
            }
            if popped < POP_BATCH {
                break;
            }
        }
        batch.extend(next_frame(&mut pending, &mut pending_bytes, BATCH_BYTES));
        if batch.is_empty() && !node_done {
            std::thread::sleep(nap); // a poll period, not a synchronisation
            nap = (nap * 2).min(NAP_MAX);
        } else {
            nap = NAP_MIN;
        }
        if !batch.is_empty() {
            let now = Instant::now();
            prefetch.results(batch.len(), now - last_result);
            last_result = now;
        }
        let now_running = running_tests(&cfg.tasks);
        if !batch.is_empty() || now_running != running || last_sent.elapsed() >= Duration::from_secs(1) {
            running = now_running;
            let msg = Message::Results { batch: std::mem::take(&mut batch), running: running.clone() };
            if !send(&msg) && !inb.finished.load(Ordering::SeqCst) {
                return Outcome::Lost("lost the main: cannot send".into());
            }
            last_sent = Instant::now();
        }
        if node_done && pending.is_empty() {
            let _ = send(&Message::Bye);
            link.writer.shutdown();
            return Outcome::Finished;
        }
        if inb.failed.load(Ordering::SeqCst) {
            if let Some(how) = inb.failure.lock().unwrap_or_else(|p| p.into_inner()).take() {
                return how;
            }
        }
        // Credits, once the node's fixtures are ready and while work may come.
        let units_ns = inb.last_units_ns.load(Ordering::SeqCst);
        if credit_sent_ns != 0 && units_ns > credit_sent_ns {
            prefetch.round_trip(Duration::from_nanos(units_ns - credit_sent_ns));
            credit_sent_ns = 0;
        }
        let ready = cfg.tasks.user_word(READY_WORD).load(Ordering::SeqCst) != 0;
        if ready && !inb.stopped.load(Ordering::SeqCst) && !inb.finished.load(Ordering::SeqCst) {
            let requested = inb.requested.load(Ordering::SeqCst);
            let want = prefetch.credit(cfg.tasks.len() as u32, requested);
            if want > 0 {
                inb.requested.fetch_add(want, Ordering::SeqCst);
                if credit_sent_ns == 0 {
                    credit_sent_ns = monotonic_ns();
                }
                if !send(&Message::Credit { units: want }) {
                    return Outcome::Lost("lost the main: cannot send".into());
                }
            }
        }
    }
}

/// The results of the next frame, oldest first: up to `limit` bytes of them, at least one (a
/// result bigger than `limit` goes alone); the rest stays in `pending` for the next frame.
fn next_frame(pending: &mut VecDeque<Vec<u8>>, pending_bytes: &mut usize, limit: usize) -> Vec<Vec<u8>> {
    let mut frame = Vec::new();
    let mut bytes = 0;
    while let Some(item) = pending.front() {
        if !frame.is_empty() && bytes + item.len() > limit {
            break;
        }
        bytes += item.len();
        *pending_bytes -= item.len();
        frame.extend(pending.pop_front());
    }
    frame
}

/// Test indices the node's workers are running right now (from the ring's lease table).
fn running_tests(tasks: &Ring) -> Vec<u32> {
    let mut v: Vec<u32> = tasks.leases().iter().filter_map(|l| l.key.map(|k| k as u32)).collect();
    v.sort_unstable();
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_keep_order_and_size_limit() {
        let sizes = [3usize, 3, 3, 10, 1, 6];
        let mut pending: VecDeque<Vec<u8>> = sizes.iter().enumerate().map(|(i, &n)| vec![i as u8; n]).collect();
        let mut pending_bytes: usize = sizes.iter().sum();
        let mut frames = Vec::new();
        while !pending.is_empty() {
            frames.push(next_frame(&mut pending, &mut pending_bytes, 6));
        }
        let shape: Vec<Vec<u8>> = frames.iter().map(|f| f.iter().map(|item| item[0]).collect()).collect();
        assert_eq!(shape, vec![vec![0, 1], vec![2], vec![3], vec![4], vec![5]]);
        assert_eq!(pending_bytes, 0);
        assert!(next_frame(&mut pending, &mut pending_bytes, 6).is_empty());
    }
}
