//! Automated fleet runs (`--remote-worker`): the main deploys the project to every host over
//! ssh, in parallel, and runs a worker node there (see docs/fleet.md).
//!
//! - `plan`: what the main asks for (JSON from Python);
//! - `bundle`: the content-hashed tars shipped to hosts;
//! - `ssh`: one multiplexed connection per host (the user's own ssh);
//! - `shell`: the sh text run on the hosts;
//! - `host`: one host's steps, start to end;
//! - `events`: progress reported back to the main.

pub mod bundle;
pub mod events;
pub mod host;
pub mod plan;
pub mod shell;
pub mod ssh;

use events::Emitter;
pub use host::Stop;
use plan::{HostPlan, Plan};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// A fleet at work: every host runs on its own task, none waits for another. Hosts are the
/// plan's, plus any added while the fleet runs (hosts streamed by a reservation service).
pub struct Fleet {
    events: Receiver<String>,
    stop: watch::Sender<Stop>,
    hosts: Option<tokio::sync::mpsc::UnboundedSender<HostPlan>>,
    thread: Option<JoinHandle<()>>,
}

impl Fleet {
    pub fn start(mut plan: Plan) -> std::io::Result<Fleet> {
        std::fs::create_dir_all(&plan.log_dir)?;
        let (tx, rx) = channel();
        let (stop_tx, stop_rx) = watch::channel(Stop::Go);
        let (hosts_tx, mut hosts_rx) = tokio::sync::mpsc::unbounded_channel();
        for h in std::mem::take(&mut plan.hosts) {
            let _ = hosts_tx.send(h);
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .thread_name("mproc-fleet")
            .build()?;
        let plan = Arc::new(plan);
        let emitter = Emitter::new(tx, Instant::now());
        let thread = std::thread::Builder::new().name("mproc-fleet".into()).spawn(move || {
            runtime.block_on(async move {
                let mut tasks = Vec::new();
                while let Some(h) = hosts_rx.recv().await {
                    tasks.push(tokio::spawn(host::Host::new(plan.clone(), h, emitter.clone(), stop_rx.clone()).run()));
                }
                for t in tasks {
                    let _ = t.await;
                }
            });
        })?;
        Ok(Fleet { events: rx, stop: stop_tx, hosts: Some(hosts_tx), thread: Some(thread) })
    }

    /// Starts one more host (its `index` must be new).
    pub fn add(&self, host: HostPlan) {
        if let Some(tx) = &self.hosts {
            let _ = tx.send(host);
        }
    }

    /// No host will be added any more: the fleet is done once its hosts are.
    pub fn no_more_hosts(&mut self) {
        self.hosts = None;
    }

    /// Progress lines reported so far, waiting up to `timeout` for the first.
    pub fn events(&self, timeout: Duration) -> Vec<String> {
        let mut out = Vec::new();
        match self.events.recv_timeout(timeout) {
            Ok(e) => out.push(e),
            Err(RecvTimeoutError::Timeout) | Err(RecvTimeoutError::Disconnected) => return out,
        }
        while let Ok(e) = self.events.try_recv() {
            out.push(e);
        }
        out
    }

    /// Winds the fleet down to `level`: hosts not running a node yet never start one; with
    /// `Stop::Everything` running nodes are told to end too (and killed after a grace).
    /// `finalize_script` still runs wherever the host was set up.
    pub fn stop(&self, level: Stop) {
        self.stop.send_if_modified(|s| {
            let raise = level > *s;
            if raise {
                *s = level;
            }
            raise
        });
    }

    /// True once every host is done (cleaned up and disconnected); implies no_more_hosts.
    pub fn wait(&mut self, timeout: Duration) -> bool {
        self.no_more_hosts();
        let deadline = Instant::now() + timeout;
        while let Some(t) = &self.thread {
            if t.is_finished() {
                let _ = self.thread.take().map(|t| t.join());
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        true
    }
}
