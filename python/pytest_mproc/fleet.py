"""Fleet runs (`--remote-worker`): the main deploys the project to every host over ssh and
runs a worker node there, all hosts in parallel (the work itself is Rust: `_core.Fleet`,
bridge/src/deploy/). This module is the pytest side: it validates the options when pytest
configures (usage errors), builds what is shipped once the main's selection is known, reports
each host's progress and ends the fleet with the run.

See docs/fleet.md."""

from __future__ import annotations

import json
import os
import queue
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from . import _core, forwarded_args, project_config, remote_hosts, runtime_wheels
from .settings import Settings
from .verbose import log

HOST_ARTIFACTS_ENV = "PTMPROC_HOST_ARTIFACTS_DIR"
# How long finalize_script may run after a stopped run, and the whole fleet may take to end.
FINALIZE_TIMEOUT = 30
END_TIMEOUT = 120


@dataclass
class FleetSetup:
    """What pytest_configure validated: the hosts (or the reservation service's URLs), the
    project and the hosts' arguments."""
    hosts: list
    urls: list
    project: project_config.ProjectConfig
    args: list
    cores: str
    ssh_config: str | None
    direct: bool  # nodes connect to --as-main (else through reverse tunnels)
    log_dir: Path = field(default_factory=lambda: Path(os.environ.get(HOST_ARTIFACTS_ENV) or "artifacts").resolve())


def configure(config, remote_workers: list[str], as_main: str | None, cores: str | None) -> FleetSetup:
    """Validates a fleet run's options; ValueError (a usage error) naming the problem."""
    urls = [v for v in remote_workers if remote_hosts.is_reservation_url(v)]
    if urls and len(urls) != len(remote_workers):
        raise ValueError(f"--remote-worker {urls[0]}: a reservation service cannot be combined with hosts; "
                         "more --remote-worker URLs are its backups")
    hosts = [] if urls else remote_hosts.parse(remote_workers)
    invocation = Path(config.invocation_params.dir)
    path = project_config.find(config.getoption("mproc_project_structure"), invocation)
    if path is None:
        raise ValueError(f"--remote-worker needs a project definition: --project_structure PATH, or "
                         f"{project_config.DEFAULT_NAME} in {invocation}")
    project = project_config.load(path)
    args = forwarded_args.rootdir_arg(config, project.root) + forwarded_args.forward(config, project.root)
    ssh_config = config.getoption("mproc_ssh_config")
    if ssh_config and not os.path.isfile(ssh_config):
        raise ValueError(f"--mproc-ssh-config: no such file {ssh_config!r}")
    return FleetSetup(hosts=hosts, urls=urls, project=project, args=args, cores=(cores or "auto").strip(),
                      ssh_config=os.path.abspath(ssh_config) if ssh_config else None, direct=as_main is not None)


@dataclass
class HostState:
    label: str
    started_at: float | None = None
    ended_at: float | None = None
    failure: str | None = None
    done: bool = False
    workers: int = 0
    tests: int | None = None  # handed to its node (known when the node leaves)
    lost: str | None = None
    artifacts: str | None = None


class FleetRun:
    def __init__(self, setup: FleetSetup, session, token: bytes) -> None:
        self.setup = setup
        self.session = session
        self.config = session.config
        self.token = token
        self.fleet: _core.Fleet | None = None
        self.hosts = [HostState(h.label) for h in setup.hosts]
        self.t0 = time.monotonic()
        self.control_dir: str | None = None
        self.reservation = None
        # Whether a host arriving now is still wanted (set by the main: work left to hand out).
        self.wants_hosts = lambda: True
        # Lines from other threads (the reservation reader), printed by poll().
        self._lines: queue.SimpleQueue = queue.SimpleQueue()
        self.first_host_line: float | None = None
        self.first_result: float | None = None
        self.requested: float | None = None

    # ---- start ----

    def start(self, listen_host: str, port: int) -> None:
        """Builds what the hosts get and starts every host (in Rust threads)."""
        setup = self.setup
        project = setup.project
        work = Path(tempfile.mkdtemp(prefix="ptmproc-fleet-"))
        self.control_dir = str(work)
        runtime_tar, runtime_hash, mproc_req = _runtime()
        bundle_hash = _core.pack_bundle(str(project.root), project.files, str(work / "bundle.tar"))
        req_dir = project.requirements_dir
        venv_key = _venv_key(runtime_hash, project, req_dir)
        local_host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(listen_host, listen_host)
        main = None
        if setup.direct:
            # 0.0.0.0: each host connects to the address it sees the main's ssh come from.
            main = {"host": "" if listen_host in ("0.0.0.0", "::", "") else listen_host, "port": port}
        plan = {
            "run_id": uuid.uuid4().hex[:12],
            "control_dir": str(work),
            "ssh_config": setup.ssh_config,
            "user": Settings.ssh_username,
            "password": Settings.ssh_password,
            "cached_dir": str(Settings.cache_dir) if Settings.cache_dir else None,
            "tmp_root": str(Settings.tmp_root) if Settings.tmp_root else None,
            "project_name": project.project_name,
            "runtime": {"path": str(runtime_tar), "hash": runtime_hash},
            "bundle": {"path": str(work / "bundle.tar"), "hash": bundle_hash},
            "mproc_requirement": mproc_req,
            "venv_key": venv_key,
            "requirements_dir": req_dir,
            "prepare_script": project.prepare_script,
            "finalize_script": project.finalize_script,
            "selection": "\n".join(item.nodeid for item in self.session.items),
            "main": main,
            "main_local": {"host": local_host, "port": port},
            "token_hex": self.token.hex(),
            "pytest_args": setup.args,
            "default_cores": setup.cores,
            "log_dir": str(setup.log_dir),
            "connect_timeout": 10,
            "finalize_timeout": FINALIZE_TIMEOUT,
            "hosts": [h.plan(i) for i, h in enumerate(setup.hosts)],
        }
        where = (f"the hosts of {setup.urls[0]}" if setup.urls else
                 f"{len(setup.hosts)} host{'s' if len(setup.hosts) != 1 else ''}")
        self._write(f"pytest-mproc: deploying {project.project_name} to {where} "
                    f"({len(project.files)} files; logs in {setup.log_dir})")
        self.fleet = _core.Fleet(json.dumps(plan))
        if setup.urls:
            from .reservation import Reservation, ReservationError

            self.reservation = Reservation(setup.urls, self._arrived, self._lines.put)
            self.requested = time.monotonic()
            try:
                self.reservation.start()
            except ReservationError as e:
                raise self.session.Interrupted(f"pytest-mproc: {e}") from None
            if self.reservation.source != setup.urls[0]:
                self._write(f"pytest-mproc: reservation service: using {self.reservation.source} "
                            f"(earlier endpoints failed)", failed=True)
            if self.reservation.session:
                self._write(f"pytest-mproc: reservation session {self.reservation.session.get('session_id')}")

    def _arrived(self, spec) -> None:
        """A host from the reservation service (its reader thread)."""
        if self.first_host_line is None:
            self.first_host_line = time.monotonic()
        if not self.wants_hosts():
            self._lines.put(f"pytest-mproc: {spec.label} arrived after every test was handed out: not deployed")
            return
        index = len(self.hosts)
        self.hosts.append(HostState(spec.label))
        self.fleet.add_host(json.dumps(spec.plan(index)))

    # ---- during the run ----

    def poll(self, timeout: float = 0.0) -> None:
        while not self._lines.empty():
            self._write(self._lines.get(), failed=True)
        if self.fleet is None:
            return
        for line in self.fleet.events(timeout):
            self._on_event(json.loads(line))

    def more_hosts_may_come(self) -> bool:
        return self.reservation is not None and self.reservation.streaming

    def pending(self) -> bool:
        """Some host is still on its way (neither running a node nor failed)."""
        return any(h.started_at is None and h.failure is None and not h.done for h in self.hosts)

    def on_node_event(self, ev: dict) -> None:
        """The coordinator's view of a host's node (its name is Worker-<n>)."""
        name = ev.get("name", "")
        if not name.startswith("Worker-") or not name[7:].isdigit() or int(name[7:]) >= len(self.hosts):
            return
        i = int(name[7:])
        h = self.hosts[i]
        if ev["ev"] == "joined":
            h.workers = ev.get("workers", 0)
            self._write(f"pytest-mproc: Worker-{i} {h.label}: {h.workers} worker{'s' if h.workers != 1 else ''} up")
        elif ev["ev"] == "left":
            h.tests = ev.get("tests")
        elif ev["ev"] == "lost":
            h.lost = ev.get("reason")

    def running(self) -> bool:
        """Some host runs a worker node (started, not ended)."""
        return any(h.started_at is not None and h.ended_at is None for h in self.hosts)

    def _on_event(self, ev: dict) -> None:
        h = self.hosts[ev["host"]]
        phase, detail = ev["phase"], ev["detail"]
        log(f"fleet: Worker-{ev['host']} {h.label}: {phase} {detail} at {ev['secs']:.2f} s")
        if phase == "started":
            h.started_at = ev["secs"]
        elif phase == "ended":
            h.ended_at = ev["secs"]
        elif phase == "failed":
            h.failure = detail
        elif phase == "artifacts":
            h.artifacts = detail
        elif phase == "done":
            h.done = True
            return
        if phase in ("ended", "finalized", "artifacts") and not h.failure:
            return  # in the summary; the terminal is showing test progress by now
        text = {
            "connected": f"connected ({detail})",
            "bundle": f"bundle {detail}",
            "venv": f"venv {detail}",
            "prepared": "prepare_script done",
            "tunnel": f"reverse tunnel {detail}",
            "unreachable_main": detail,
            "started": f"worker node started ({detail})",
            "ended": f"worker node ended ({detail})",
            "finalized": "finalize_script done",
            "finalize_failed": detail,
            "artifacts": f"artifacts pulled back: {detail}",
            "artifacts_failed": detail,
            "failed": f"cannot take part: {detail}",
        }.get(phase, f"{phase} {detail}")
        self._write(f"pytest-mproc: Worker-{ev['host']} {h.label}: {text}", failed=phase in ("failed", "finalize_failed"))

    def _write(self, line: str, failed: bool = False) -> None:
        tr = self.config.pluginmanager.getplugin("terminalreporter")
        if tr is not None:
            if tr._tw.width_of_current_line:
                tr._tw.line()  # after progress dots
            tr.write_line(line, yellow=failed)

    # ---- end ----

    def end(self, stopped: bool) -> None:
        """Waits for every host to finish (finalize_script, artifacts, removal of the run
        directory), then ends the reservation session (exactly once, however the run ended);
        `stopped`: the run is being cut short, so hosts are told to end now."""
        self.wants_hosts = lambda: False
        try:
            if self.fleet is not None:
                # Hosts still on their way are not needed any more; running nodes end by
                # themselves (the main told them the run is over) unless the run is cut short.
                self.fleet.stop(everything=stopped)
                deadline = time.monotonic() + END_TIMEOUT
                while not self.fleet.wait(0.2):
                    self.poll()
                    if time.monotonic() > deadline:
                        self._write(f"pytest-mproc: some hosts did not finish within {END_TIMEOUT} s", failed=True)
                        break
                self.poll()
        finally:
            if self.reservation is not None:
                self.reservation.end()
                self.poll()
            if self.control_dir:
                import shutil

                shutil.rmtree(self.control_dir, ignore_errors=True)

    def summary(self) -> list[str]:
        lines = []
        if self.reservation is not None and self.first_host_line is not None:
            line = f"reservation: first host {self.first_host_line - self.requested:.2f} s after the request"
            if self.first_result is not None and self.first_result > self.first_host_line:
                line += f", first result {self.first_result - self.first_host_line:.2f} s after that host arrived"
            lines.append(line)
        for i, h in enumerate(self.hosts):
            if h.failure and h.started_at is None:
                lines.append(f"Worker-{i} {h.label}: did not take part: {h.failure}")
            elif h.started_at is not None:
                end = h.ended_at if h.ended_at is not None else time.monotonic() - self.t0
                tests = f"{h.tests} tests" if h.tests is not None else "tests"
                line = (f"Worker-{i} {h.label}: {tests} on {h.workers} worker{'s' if h.workers != 1 else ''}, "
                        f"node up from {h.started_at:.1f} s to {end:.1f} s")
                if h.lost:
                    line += f"; lost: {h.lost}"
                elif h.failure:
                    line += f"; {h.failure}"
                lines.append(line)
            if h.artifacts:
                lines.append(f"Worker-{i} {h.label}: artifacts in {h.artifacts}")
        return lines


def _runtime() -> tuple[Path, str, str]:
    """(tar of the runtime wheels, its hash, the pytest-mproc requirement), packed once per set
    of wheels (their names carry the fingerprints of what is installed)."""
    import hashlib

    wheel_dir, wheels, mproc_req = runtime_wheels.build()
    key = hashlib.sha256("\n".join(wheels).encode()).hexdigest()[:16]
    tar = wheel_dir.parent / f"runtime-{key}.tar"
    digest = tar.with_suffix(".sha256")
    if tar.exists() and digest.exists():
        os.utime(tar)  # in use (runtime_wheels prunes what was not used for a while)
        return tar, digest.read_text().strip(), mproc_req
    runtime_hash = _core.pack_bundle(str(wheel_dir), wheels, str(tar))
    tmp = digest.with_suffix(f".{os.getpid()}.part")
    tmp.write_text(runtime_hash)
    os.replace(tmp, digest)  # several mains may pack the same runtime at once
    return tar, runtime_hash, mproc_req


def _venv_key(runtime_hash: str, project, req_dir: str | None) -> str:
    """Same key, same venv: the runtime wheels, requirements.txt and the packages shipped
    beside it decide what is installed."""
    import hashlib

    h = hashlib.sha256(runtime_hash.encode())
    if req_dir is not None:
        for rel in project.files:
            if rel == os.path.normpath(os.path.join(req_dir, "requirements.txt")) or rel.endswith((".whl", ".tar.gz", ".zip")):
                h.update(rel.encode() + b"\0" + (project.root / rel).read_bytes())
    return h.hexdigest()[:16]
