//! One host of a fleet run, start to end: connect, ship what it lacks, then one session that
//! sets up the run directory and the cached venv, runs `prepare_script` and becomes
//! `pytest --as-worker` (connecting directly or through a reverse tunnel), its output streamed
//! into the host's logs; at the end one session that runs `finalize_script` and removes the run
//! directory — also when the run is stopped (Ctrl-C, a failing main, the work done early).
//!
//! Every ssh session costs a login shell on the host, so a host takes three in all (probe,
//! tunnel request, run) plus one per blob it lacks; a fourth (end) only when the run session
//! could not finish (stopped, connection lost).

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
/// Added to the finalize timeout for the rest of the end session.
const END_SLACK: Duration = Duration::from_secs(20);

/// How far the main wants the fleet to wind down.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Stop {
    Go,
    /// The run's work is done: hosts not running a node yet do not start one.
    NoNewNodes,
    /// The run is cut short (Ctrl-C, a failing main): running nodes are ended too.
    Everything,
}

/// Why the host could not take part, for the one-line message.
struct Failure(String);

impl From<String> for Failure {
    fn from(s: String) -> Failure {
        Failure(s)
    }
}

/// Where the run session is.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Stage {
    Setup,
    Prepare,
    Pytest,
    /// The node ended: what follows is the run's ending (see `Ending`).
    Ended,
}

/// The end of a run on the host as its output tells it, in the run session (shell::run) or
/// the end session (shell::end) alike: finalize_script's output and exit code between
/// `@@finalize-begin` / `@@finalize-end CODE`, the artifacts zip (base64) between
/// `@@artifacts-begin` / `@@artifacts-end CODE`, and `@@cleaned`.
#[derive(Default)]
struct Ending {
    in_finalize: bool,
    finalize_out: Vec<String>,
    zip: Option<ArtifactZip>,
    finalized: bool,
    cleaned: bool,
}

impl Ending {
    /// Takes one line of output; false if it is not part of the ending.
    fn line(&mut self, host: &Host, line: &str) -> bool {
        if line == "@@finalize-begin" {
            self.in_finalize = true;
        } else if let Some(code) = line.strip_prefix("@@finalize-end") {
            self.in_finalize = false;
            self.finalized = true;
            host.finalize_done(code.trim().parse().ok(), &self.finalize_out);
        } else if line == "@@artifacts-begin" {
            self.zip = Some(ArtifactZip::create(&host.logs));
        } else if let Some(code) = line.strip_prefix("@@artifacts-end") {
            if let Some(z) = self.zip.take() {
                host.artifacts_done(z, Some(code.trim()));
            }
        } else if line == "@@cleaned" {
            self.cleaned = true;
        } else if let Some(z) = self.zip.as_mut() {
            z.add(line);
        } else if self.in_finalize {
            self.finalize_out.push(line.to_string());
        } else {
            return false;
        }
        true
    }
}

/// What the run session left behind, for the end session.
#[derive(Default)]
struct Left {
    /// (pid, process group) of the session on the host.
    node: Option<(u32, u32)>,
    /// The run directory was set up: finalize_script runs.
    set_up: bool,
    /// What the run session did of the ending (finalize_script ran; the run directory is
    /// removed, so no end session is needed).
    ending: Ending,
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

    fn emit(&self, phase: &str, detail: &str) {
        self.ev.emit(self.host.index, phase, detail);
    }

    pub async fn run(mut self) {
        let _ = std::fs::create_dir_all(&self.logs);
        let t0 = Instant::now();
        let conn = tokio::select! {
            c = Connection::open(&self.plan, &self.host) => c,
            _ = reached(self.stop.clone(), Stop::NoNewNodes) => Err(self.too_late()),
        };
        let conn = match conn {
            Ok(c) => c,
            Err(msg) => {
                let msg = if msg.starts_with("the run") { msg } else { format!("ssh: {msg}") };
                self.emit("failed", &msg);
                return;
            }
        };
        self.emit("connected", &format!("{:.2} s", t0.elapsed().as_secs_f64()));
        let mut left = Left::default();
        if let Err(Failure(msg)) = self.deploy_and_run(&conn.session, &mut left).await {
            self.emit("failed", &msg);
        }
        self.end(&conn.session, &left).await;
        conn.close().await;
        self.emit("done", &format!("{:.2} s", t0.elapsed().as_secs_f64()));
    }

    async fn deploy_and_run(&mut self, session: &Session, left: &mut Left) -> Result<(), Failure> {
        // What the host has, its Python, whether it reaches the main.
        let (code, out) = self.before_start(run_script(session, &shell::probe(&self.plan))).await??;
        if code != 0 {
            return Err(Failure(format!("cannot use the cache directory: {}", tail(&out))));
        }
        self.python = out.lines().find_map(|l| l.strip_prefix("python ")).map(str::to_string)
            .ok_or_else(|| Failure(format!("no python3 on the host: {}", tail(&out))))?;
        let have = |hash: &str| out.lines().any(|l| l == format!("have {hash}"));
        let mut sent = Vec::new();
        for (what, blob) in [("runtime", &self.plan.runtime), ("bundle", &self.plan.bundle)] {
            if !have(&blob.hash) {
                let n = self.before_start(self.upload(session, &blob.path, &blob.hash)).await?
                    .map_err(|e| format!("sending the {what}: {e}"))?;
                sent.push(format!("{what} {:.1} MB", n as f64 / 1e6));
            }
        }
        let detail = if sent.is_empty() { "cached".to_string() } else { format!("sent {}", sent.join(", ")) };
        self.emit("bundle", &detail);

        let direct = self.plan.main.is_some() && out.lines().any(|l| l == "reach yes");
        let address = if direct {
            let m = self.plan.main.as_ref().expect("direct needs an address");
            let host = out.lines().find_map(|l| l.strip_prefix("mainhost ")).unwrap_or(&m.host);
            if host.contains(':') { format!("[{host}]:{}", m.port) } else { format!("{host}:{}", m.port) }
        } else {
            if self.plan.main.is_some() {
                let why = out.lines().find_map(|l| l.strip_prefix("reach no ")).unwrap_or("no answer");
                self.emit("unreachable_main", &format!("cannot reach the main directly ({why}): using a reverse tunnel"));
            }
            let port = self.before_start(self.tunnel(session)).await??;
            self.emit("tunnel", &format!("127.0.0.1:{port} on the host -> the main"));
            format!("127.0.0.1:{port}")
        };
        self.check_stop()?;
        self.run_node(session, &address, left).await
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
            let seed = std::process::id().wrapping_mul(7919) ^ (self.host.index as u32).wrapping_mul(104729) ^ attempt.wrapping_mul(1009) ^ nanos();
            let port = 20000 + (seed % 40000) as u16;
            match session.request_port_forward(ForwardType::Remote, Socket::new("127.0.0.1", port), Socket::new(main.host.as_str(), main.port)).await {
                Ok(()) => return Ok(port),
                Err(e) => last = e.to_string(),
            }
        }
        Err(Failure(format!("cannot open a reverse tunnel to the main: {last}")))
    }

    /// The run session: setup, prepare_script, then the node; its output goes to setup.log,
    /// prepare.log and pytest.log by the markers it prints.
    async fn run_node(&self, session: &Session, address: &str, left: &mut Left) -> Result<(), Failure> {
        let script = shell::run(&self.plan, &self.host, &self.python, address);
        let mut child = session.command("sh").arg("-s").stdin(Stdio::piped()).stdout(Stdio::piped())
            .stderr(Stdio::piped()).spawn().await.map_err(|e| format!("starting the run: {e}"))?;
        {
            let mut stdin = child.stdin().take().expect("piped");
            stdin.write_all(script.as_bytes()).await.map_err(|e| format!("starting the run: {e}"))?;
            stdin.shutdown().await.ok();
        }
        let stdout = child.stdout().take().expect("piped");
        let mut lines = BufReader::new(stdout).lines();
        let mut logs = Logs::new(&self.logs);
        let mut stage = Stage::Setup;
        let mut prepare_code: Option<i32> = None;
        let mut node_exit: Option<i32> = None;
        let mut node_said = String::new();
        let mut last: VecDeque<String> = VecDeque::new();
        let mut cut: Option<&'static str> = None;
        let mut deadline: Option<tokio::time::Instant> = None;
        loop {
            // Before the node runs, a run that no longer wants it cuts the session short; once
            // it runs, only a stop of everything does (the node ends by itself otherwise).
            let level = if stage >= Stage::Pytest { Stop::Everything } else { Stop::NoNewNodes };
            let next = match deadline {
                None => tokio::select! {
                    l = lines.next_line() => l,
                    _ = reached(self.stop.clone(), level) => {
                        cut = Some(if stage >= Stage::Pytest { "stopped" } else { "too late" });
                        if let Some((pid, pgid)) = left.node {
                            let _ = run_script(session, &shell::terminate(pid, pgid)).await;
                        }
                        deadline = Some(tokio::time::Instant::now() + STOP_GRACE);
                        continue;
                    }
                },
                Some(d) => match tokio::time::timeout_at(d, lines.next_line()).await {
                    Ok(l) => l,
                    Err(_) => break,
                },
            };
            let line = match next {
                Ok(Some(line)) => line,
                Ok(None) | Err(_) => break,
            };
            if stage == Stage::Ended && left.ending.line(self, &line) {
                continue;
            }
            if let Some(rest) = line.strip_prefix("@@") {
                let mut words = rest.split_whitespace();
                match words.next() {
                    Some("pid") => {
                        let pid: Option<u32> = words.next().and_then(|w| w.parse().ok());
                        let pgid: Option<u32> = words.next().and_then(|w| w.parse().ok());
                        if let Some(pid) = pid {
                            left.node = Some((pid, pgid.unwrap_or(pid)));
                        }
                        continue;
                    }
                    Some("venv") => {
                        self.emit("venv", words.next().unwrap_or(""));
                        continue;
                    }
                    Some("setup-done") => {
                        left.set_up = true;
                        stage = Stage::Prepare;
                        last.clear();
                        continue;
                    }
                    Some("prepare-begin") => continue,
                    Some("prepare-end") => {
                        prepare_code = words.next().and_then(|w| w.parse().ok());
                        if prepare_code == Some(0) {
                            self.emit("prepared", "");
                        }
                        continue;
                    }
                    Some("exec") => {
                        stage = Stage::Pytest;
                        last.clear();
                        let pid = left.node.map(|n| n.0).unwrap_or(0);
                        self.emit("started", &format!("session pid {pid} on the host, connecting to {address}"));
                        continue;
                    }
                    Some("node-exit") => {
                        node_exit = words.next().and_then(|w| w.parse().ok());
                        self.emit("ended", &format!("exit {}", node_exit.unwrap_or(-1)));
                        stage = Stage::Ended;
                        node_said = last.iter().cloned().collect::<Vec<_>>().join(" / ");
                        continue;
                    }
                    _ => {}
                }
            }
            logs.write(stage, &line).await;
            last.push_back(line);
            if last.len() > TAIL_LINES {
                last.pop_front();
            }
        }
        logs.flush().await;
        let status = match tokio::time::timeout(Duration::from_secs(5), child.wait()).await {
            Ok(Ok(s)) => s.code().unwrap_or(-1),
            _ => -1,
        };
        let said = last.iter().cloned().collect::<Vec<_>>().join(" / ");
        // A prepare_script that failed is the cause, also when the run ended meanwhile.
        if let Some(c) = prepare_code.filter(|c| *c != 0) {
            if stage == Stage::Prepare {
                return Err(Failure(format!("prepare_script exited with {c}: {said}")));
            }
        }
        match (stage, cut) {
            (Stage::Ended, _) => match node_exit {
                Some(c) if c != 0 && cut.is_none() => Err(Failure(format!("pytest on the host exited with {c}: {node_said}"))),
                _ => Ok(()),
            },
            (Stage::Pytest, _) => {
                self.emit("ended", &format!("exit {status}"));
                if cut.is_none() {
                    return Err(Failure(format!("the session on the host ended before pytest did (exit {status}): {said}")));
                }
                Ok(())
            }
            (_, Some(_)) => Err(Failure(self.too_late())),
            (Stage::Setup, None) => Err(Failure(format!("setting up the run directory and venv failed (exit {status}): {said}"))),
            (Stage::Prepare, None) => Err(Failure(format!("the run ended before pytest started (exit {status}): {said}"))),
        }
    }

    /// The end session, when the run session did not finish: what is left of the node,
    /// finalize_script (if it did not run), the run directory.
    async fn end(&self, session: &Session, left: &Left) {
        if left.ending.cleaned {
            return;
        }
        let finalize = left.set_up && !left.ending.finalized && self.plan.finalize_script.is_some();
        let text = shell::end(&self.plan, &self.host, &self.python, left.node, finalize);
        let limit = Duration::from_secs(self.plan.finalize_timeout as u64) + END_SLACK;
        match tokio::time::timeout(limit, run_script(session, &text)).await {
            Ok(Ok((_, out))) => {
                let mut ending = Ending::default();
                for line in out.lines() {
                    ending.line(self, line);
                }
                if finalize && !ending.finalized {
                    self.emit("finalize_failed", &format!("finalize_script did not run: {}", tail(&out)));
                }
            }
            Ok(Err(e)) => self.emit("finalize_failed", &format!("ending the run on the host: {e}")),
            Err(_) => {
                self.emit("finalize_failed", &format!("finalize_script did not end within {} s", self.plan.finalize_timeout));
                let _ = tokio::time::timeout(END_SLACK, run_script(session, &format!("rm -rf {}", shell::run_dir(&self.plan, &self.host)))).await;
            }
        }
    }

    /// finalize_script ended with `code` (None: unreadable), having printed `out`.
    fn finalize_done(&self, code: Option<i32>, out: &[String]) {
        let _ = std::fs::write(self.logs.join("finalize.log"), out.join("\n") + "\n");
        match code {
            Some(0) => self.emit("finalized", ""),
            c => self.emit("finalize_failed", &format!("finalize_script exited with {}: {}", c.unwrap_or(-1), tail(&out.join("\n")))),
        }
    }

    fn artifacts_done(&self, z: ArtifactZip, code: Option<&str>) {
        match z.finish(code) {
            Ok((path, n)) => self.emit("artifacts", &format!("{} ({:.1} kB)", path.display(), n as f64 / 1e3)),
            Err(e) => self.emit("artifacts_failed", &format!("artifacts not pulled back: {e}")),
        }
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
}

/// The host's logs on the main: setup.log, prepare.log, pytest.log (opened when first written).
struct Logs {
    dir: PathBuf,
    files: Vec<(Stage, tokio::fs::File)>,
}

impl Logs {
    fn new(dir: &std::path::Path) -> Logs {
        Logs { dir: dir.to_path_buf(), files: Vec::new() }
    }

    async fn write(&mut self, stage: Stage, line: &str) {
        if !self.files.iter().any(|(s, _)| *s == stage) {
            let name = match stage {
                Stage::Setup => "setup.log",
                Stage::Prepare => "prepare.log",
                Stage::Pytest | Stage::Ended => "pytest.log",
            };
            match tokio::fs::File::create(self.dir.join(name)).await {
                Ok(f) => self.files.push((stage, f)),
                Err(_) => return,
            }
        }
        if let Some((_, f)) = self.files.iter_mut().find(|(s, _)| *s == stage) {
            let _ = f.write_all(line.as_bytes()).await;
            let _ = f.write_all(b"\n").await;
        }
    }

    async fn flush(&mut self) {
        for (_, f) in self.files.iter_mut() {
            let _ = f.flush().await;
        }
    }
}

/// The host's artifacts arriving as base64 lines, written to `Worker-<n>/artifacts.zip`.
struct ArtifactZip {
    path: PathBuf,
    data: Vec<u8>,
    error: Option<String>,
}

impl ArtifactZip {
    fn create(dir: &std::path::Path) -> ArtifactZip {
        ArtifactZip { path: dir.join("artifacts.zip"), data: Vec::new(), error: None }
    }

    fn add(&mut self, line: &str) {
        use base64::Engine;
        match base64::engine::general_purpose::STANDARD.decode(line.trim()) {
            Ok(b) => self.data.extend_from_slice(&b),
            Err(e) => self.error = Some(format!("bad base64 from the host: {e}")),
        }
    }

    fn finish(self, code: Option<&str>) -> Result<(PathBuf, usize), String> {
        if let Some(e) = self.error {
            return Err(e);
        }
        if code != Some("0") {
            return Err(format!("zipping them on the host failed (exit {})", code.unwrap_or("?")));
        }
        std::fs::write(&self.path, &self.data).map_err(|e| format!("{}: {e}", self.path.display()))?;
        Ok((self.path, self.data.len()))
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
    let lines: Vec<&str> = out.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with("@@")).collect();
    let start = lines.len().saturating_sub(TAIL_LINES);
    lines[start..].join(" / ")
}

fn nanos() -> u32 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0)
}

/// Resolves once the main's wish reaches `level`.
async fn reached(mut rx: watch::Receiver<Stop>, level: Stop) {
    while *rx.borrow_and_update() < level {
        if rx.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}
