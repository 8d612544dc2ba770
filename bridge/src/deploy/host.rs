//! One host of a fleet run, start to end: connect, ship what it lacks, prepare the cached venv,
//! run `prepare_script`, start `pytest --as-worker` (directly or through a reverse tunnel),
//! stream its output into the host's log, then `finalize_script` and removal of the run
//! directory — also when the run is stopped (Ctrl-C, a failing main).

use super::events::Emitter;
use super::plan::{HostPlan, Plan};
use super::shell;
use super::ssh::Connection;
use openssh::{ForwardType, Session, Socket, Stdio};
use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::watch;

/// Lines of a failing step's output quoted in its one-line message.
const TAIL_LINES: usize = 3;
/// How long a stopped node may take to end after being told to (then it is killed).
const STOP_GRACE: Duration = Duration::from_secs(15);

/// Why the host could not take part, for the one-line message.
struct Failure(String);

impl From<String> for Failure {
    fn from(s: String) -> Failure {
        Failure(s)
    }
}

pub struct Host {
    plan: Arc<Plan>,
    host: HostPlan,
    ev: Emitter,
    stop: watch::Receiver<Stop>,
    logs: PathBuf,
    python: String,
}

impl Host {
    pub fn new(plan: Arc<Plan>, host: HostPlan, ev: Emitter, stop: watch::Receiver<Stop>) -> Host {
        let logs = plan.log_dir.join(format!("Worker-{}", host.index));
        Host { plan, host, ev, stop, logs, python: String::new() }
    }

    pub async fn run(mut self) {
        let _ = std::fs::create_dir_all(&self.logs);
        let t0 = Instant::now();
        let conn = tokio::select! {
            c = Connection::open(&self.plan, &self.host) => c,
            _ = reached(self.stop.clone(), Stop::NoNewNodes) => {
                self.ev.emit(self.host.index, "failed", &self.too_late());
                return;
            }
        };
        let conn = match conn {
            Ok(c) => c,
            Err(msg) => {
                self.ev.emit(self.host.index, "failed", &format!("ssh: {msg}"));
                return;
            }
        };
        self.ev.emit(self.host.index, "connected", &format!("{:.2} s", t0.elapsed().as_secs_f64()));
        let mut set_up = false;
        let mut pid = None;
        let result = self.deploy_and_run(&conn.session, &mut set_up, &mut pid).await;
        if let Err(Failure(msg)) = result {
            self.ev.emit(self.host.index, "failed", &msg);
        }
        if set_up {
            if let Some(script) = self.plan.finalize_script.clone() {
                let limit = Duration::from_secs(self.plan.finalize_timeout as u64);
                let text = shell::script(&self.plan, &self.host, &self.python, &script);
                match tokio::time::timeout(limit, run_script(&conn.session, &text)).await {
                    Ok(Ok((0, out))) => {
                        self.write_log("finalize.log", &out);
                        self.ev.emit(self.host.index, "finalized", "");
                    }
                    Ok(Ok((code, out))) => {
                        self.write_log("finalize.log", &out);
                        self.ev.emit(self.host.index, "finalize_failed", &format!("finalize_script exited with {code}: {}", tail(&out)));
                    }
                    Ok(Err(e)) => self.ev.emit(self.host.index, "finalize_failed", &format!("finalize_script: {e}")),
                    Err(_) => self.ev.emit(self.host.index, "finalize_failed", &format!("finalize_script did not end within {} s", limit.as_secs())),
                }
            }
        }
        let _ = tokio::time::timeout(Duration::from_secs(20), run_script(&conn.session, &shell::cleanup(&self.plan, &self.host, pid))).await;
        conn.close().await;
        self.ev.emit(self.host.index, "done", &format!("{:.2} s", t0.elapsed().as_secs_f64()));
    }

    async fn deploy_and_run(&mut self, session: &Session, set_up: &mut bool, pid: &mut Option<u32>) -> Result<(), Failure> {
        // What the host has, its Python, whether it reaches the main.
        let (code, out) = run_script(session, &shell::probe(&self.plan)).await?;
        if code != 0 {
            return Err(Failure(format!("cannot prepare the cache directory: {}", tail(&out))));
        }
        self.python = out.lines().find_map(|l| l.strip_prefix("python ")).map(str::to_string)
            .ok_or_else(|| Failure(format!("no python3 on the host: {}", tail(&out))))?;
        let have = |hash: &str| out.lines().any(|l| l == format!("have {hash}"));
        let mut sent = Vec::new();
        for (what, blob) in [("runtime", &self.plan.runtime), ("bundle", &self.plan.bundle)] {
            if !have(&blob.hash) {
                let n = self.upload(session, &blob.path, &blob.hash).await.map_err(|e| format!("sending the {what}: {e}"))?;
                sent.push(format!("{what} {:.1} MB", n as f64 / 1e6));
            }
            self.check_stop()?;
        }
        let detail = if sent.is_empty() { "cached".to_string() } else { format!("sent {}", sent.join(", ")) };
        self.ev.emit(self.host.index, "bundle", &detail);
        let direct = self.plan.main.is_some() && out.lines().any(|l| l == "reach yes");
        if self.plan.main.is_some() && !direct {
            let why = out.lines().find_map(|l| l.strip_prefix("reach no ")).unwrap_or("no answer");
            self.ev.emit(self.host.index, "unreachable_main", &format!("cannot reach the main directly ({why}): using a reverse tunnel"));
        }

        let (code, setup_out) = self.before_start(run_script(session, &shell::setup(&self.plan, &self.host, &self.python))).await??;
        *set_up = true;
        self.write_log("setup.log", &setup_out);
        if code != 0 {
            return Err(Failure(format!("installing the venv failed (exit {code}): {}", tail(&setup_out))));
        }
        let venv = if setup_out.contains("@@venv installed") { "installed" } else { "cached" };
        self.ev.emit(self.host.index, "venv", venv);
        self.check_stop()?;

        if let Some(script) = self.plan.prepare_script.clone() {
            let (code, out) = self.before_start(run_script(session, &shell::script(&self.plan, &self.host, &self.python, &script))).await??;
            self.write_log("prepare.log", &out);
            if code != 0 {
                return Err(Failure(format!("prepare_script exited with {code}: {}", tail(&out))));
            }
            self.ev.emit(self.host.index, "prepared", "");
            self.check_stop()?;
        }

        let address = if direct {
            let m = self.plan.main.as_ref().expect("direct needs an address");
            let host = out.lines().find_map(|l| l.strip_prefix("mainhost ")).unwrap_or(&m.host);
            if host.contains(':') { format!("[{host}]:{}", m.port) } else { format!("{host}:{}", m.port) }
        } else {
            let port = self.tunnel(session).await?;
            self.ev.emit(self.host.index, "tunnel", &format!("127.0.0.1:{port} on the host -> the main"));
            format!("127.0.0.1:{port}")
        };
        self.run_node(session, &address, pid).await
    }

    fn check_stop(&self) -> Result<(), Failure> {
        if *self.stop.borrow() >= Stop::NoNewNodes {
            return Err(Failure(self.too_late()));
        }
        Ok(())
    }

    fn too_late(&self) -> String {
        match *self.stop.borrow() {
            Stop::Everything => "the run was stopped before this host started".into(),
            _ => "the run was over before this host was ready".into(),
        }
    }

    /// A step before the node starts, given up when no new node is wanted any more.
    async fn before_start<T>(&self, step: impl std::future::Future<Output = T>) -> Result<T, Failure> {
        tokio::select! {
            r = step => Ok(r),
            _ = reached(self.stop.clone(), Stop::NoNewNodes) => Err(Failure(self.too_late())),
        }
    }

    async fn upload(&self, session: &Session, path: &std::path::Path, hash: &str) -> Result<u64, String> {
        let mut file = tokio::fs::File::open(path).await.map_err(|e| format!("{}: {e}", path.display()))?;
        let mut child = session.shell(shell::upload(&self.plan, hash)).stdin(Stdio::piped()).stdout(Stdio::null())
            .stderr(Stdio::piped()).spawn().await.map_err(|e| e.to_string())?;
        let mut stdin = child.stdin().take().expect("piped");
        let n = tokio::io::copy(&mut file, &mut stdin).await.map_err(|e| e.to_string())?;
        stdin.shutdown().await.map_err(|e| e.to_string())?;
        drop(stdin);
        let out = child.wait_with_output().await.map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(tail(&String::from_utf8_lossy(&out.stderr)));
        }
        Ok(n)
    }

    /// A port on the host's loopback forwarded to the main's queue over this connection.
    async fn tunnel(&self, session: &Session) -> Result<u16, Failure> {
        let main = &self.plan.main_local;
        let mut last = String::new();
        for attempt in 0..8u32 {
            let port = 20000 + ((std::process::id() * 7919 + self.host.index as u32 * 104729 + attempt * 1009 + nanos()) % 40000) as u16;
            match session.request_port_forward(ForwardType::Remote, Socket::new("127.0.0.1", port), Socket::new(main.host.as_str(), main.port)).await {
                Ok(()) => return Ok(port),
                Err(e) => last = e.to_string(),
            }
        }
        Err(Failure(format!("cannot open a reverse tunnel to the main: {last}")))
    }

    async fn run_node(&self, session: &Session, address: &str, pid: &mut Option<u32>) -> Result<(), Failure> {
        let script = shell::start(&self.plan, &self.host, &self.python, address);
        let mut child = session.command("sh").arg("-s").stdin(Stdio::piped()).stdout(Stdio::piped())
            .stderr(Stdio::piped()).spawn().await.map_err(|e| format!("starting pytest: {e}"))?;
        {
            let mut stdin = child.stdin().take().expect("piped");
            stdin.write_all(script.as_bytes()).await.map_err(|e| format!("starting pytest: {e}"))?;
            stdin.shutdown().await.ok();
        }
        let stdout = child.stdout().take().expect("piped");
        let mut lines = BufReader::new(stdout).lines();
        let log_path = self.logs.join("pytest.log");
        let mut log = tokio::fs::File::create(&log_path).await.map_err(|e| format!("{}: {e}", log_path.display()))?;
        let mut last: VecDeque<String> = VecDeque::new();
        let mut stop = self.stop.clone();
        let mut stop_deadline: Option<tokio::time::Instant> = None;
        loop {
            let next = match stop_deadline {
                None => tokio::select! {
                    l = lines.next_line() => l,
                    _ = reached(stop.clone(), Stop::Everything) => {
                        // Tell the node to end (its pytest, then workers, fork server and bridge).
                        if let Some(p) = *pid {
                            let _ = run_script(session, &format!("kill -TERM {p} 2>/dev/null || true")).await;
                        }
                        stop_deadline = Some(tokio::time::Instant::now() + STOP_GRACE);
                        stop.mark_unchanged();
                        continue;
                    }
                },
                Some(deadline) => match tokio::time::timeout_at(deadline, lines.next_line()).await {
                    Ok(l) => l,
                    Err(_) => break,
                },
            };
            match next {
                Ok(Some(line)) => {
                    if pid.is_none() {
                        if let Some(p) = line.strip_prefix("@@pid ").and_then(|p| p.trim().parse().ok()) {
                            *pid = Some(p);
                            self.ev.emit(self.host.index, "started", &format!("pid {p} on the host, connecting to {address}"));
                            continue;
                        }
                    }
                    let _ = log.write_all(line.as_bytes()).await;
                    let _ = log.write_all(b"\n").await;
                    last.push_back(line);
                    if last.len() > TAIL_LINES {
                        last.pop_front();
                    }
                }
                Ok(None) | Err(_) => break,
            }
        }
        let _ = log.flush().await;
        let status = match tokio::time::timeout(Duration::from_secs(5), child.wait()).await {
            Ok(Ok(s)) => s.code().unwrap_or(-1),
            _ => -1,
        };
        if pid.is_none() {
            return Err(Failure(format!("pytest did not start: {}", last.iter().cloned().collect::<Vec<_>>().join(" / "))));
        }
        self.ev.emit(self.host.index, "ended", &format!("exit {status}"));
        if status != 0 && *self.stop.borrow() != Stop::Everything {
            return Err(Failure(format!("pytest on the host exited with {status}: {}", last.iter().cloned().collect::<Vec<_>>().join(" / "))));
        }
        Ok(())
    }

    fn write_log(&self, name: &str, text: &str) {
        let _ = std::fs::write(self.logs.join(name), text);
    }
}

/// Runs `script` with `sh -s` on the host; (exit code, stdout+stderr).
async fn run_script(session: &Session, script: &str) -> Result<(i32, String), String> {
    let mut child = session.command("sh").arg("-s").stdin(Stdio::piped()).stdout(Stdio::piped())
        .stderr(Stdio::piped()).spawn().await.map_err(|e| e.to_string())?;
    {
        let mut stdin = child.stdin().take().expect("piped");
        stdin.write_all(script.as_bytes()).await.map_err(|e| e.to_string())?;
        stdin.shutdown().await.ok();
    }
    let out = child.wait_with_output().await.map_err(|e| e.to_string())?;
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    Ok((out.status.code().unwrap_or(-1), text))
}

/// The last lines of a step's output, on one line.
fn tail(out: &str) -> String {
    let lines: Vec<&str> = out.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    let start = lines.len().saturating_sub(TAIL_LINES);
    lines[start..].join(" / ")
}

fn nanos() -> u32 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0)
}

/// How far the main wants the fleet to wind down.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Stop {
    Go,
    /// The run's work is done: hosts not running a node yet do not start one.
    NoNewNodes,
    /// The run is cut short (Ctrl-C, a failing main): running nodes are ended too.
    Everything,
}

/// Resolves once the main's wish reaches `level`.
async fn reached(mut rx: watch::Receiver<Stop>, level: Stop) {
    while *rx.borrow_and_update() < level {
        if rx.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}
