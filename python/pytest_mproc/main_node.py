"""The main node of a multi-host run (`--as-main HOST[:PORT] [--cores N]`).

It collects, orders the work (scheduling.py), serves the queue through the coordinator (Rust,
in this process; or a standalone one reached over TCP), sets up global fixtures and publishes
their values to every node, and replays the results that nodes stream back into pytest's hooks,
exactly as a single-host run does. With --cores N it also forks a local worker node.

It decides what node failures mean, because only it knows which tests have results:
- a worker that died on a node: the test it was running is reported as crashed;
- a node lost mid-run: the tests it was running are reported as crashed, every other test it
  had taken without a result goes back to the front of the queue for the other nodes;
- no node connected for --mproc-node-wait seconds: the run ends naming the tests not run.
"""

from __future__ import annotations

import errno
import json
import signal
import socket
import sys
import time
from collections import defaultdict

from . import _core, live_log, messages, xdist_protocol
from .child import Child, fork
from .fixture_host import FixtureHost
from .fixtures import GLOBAL
from .interrupt_guard import InterruptGuard
from .hang_report import SigquitFlag
from .status_line import StatusLine
from .replay import Outcomes, RunOutcome, print_report, run_ended_by
from .rings import BatchReader
from .supervisor import CHECK_EVERY
from .verbose import log
from .worker_node import WORKER_DIED, NodeRun

class MultiHostRun:
    def __init__(self, session, entries: list, host: str, port: int, local_workers: int,
                 token: bytes, token_generated: bool, fleet=None, history=None) -> None:
        self.session = session
        self.config = session.config
        self.items = session.items
        self.entries = entries
        self.host_name = host
        self.port = port
        self.local_workers = local_workers
        self.token = token
        self.token_generated = token_generated
        # --remote-worker: the hosts this main deploys to and starts (fleet.py).
        self.fleet = fleet
        self.node_wait = self.config.getoption("mproc_node_wait")
        self.connect_timeout = self.config.getoption("mproc_connect_timeout")
        self.outcome = RunOutcome()
        self.outcomes = Outcomes(session, self.outcome, rerun=lambda i: self.coord.submit([[[i]]], front=True),
                                 history=history)
        self.stopping = False
        self.nodes: dict[int, str] = {}
        self.local: Child | None = None
        # SINGLE_NODE blocks stay together when re-queued.
        self.block_of: dict[int, int] = {}
        for b, entry in enumerate(entries):
            if len(entry) > 1:
                for unit in entry:
                    for i in unit:
                        self.block_of[i] = b
        self.running_since: dict[int, float] = {}
        self.status = StatusLine(self.config, self._running)
        self.results = _core.Ring.create(capacity=1024, slot_size=2048, leases=64, arena_bytes=256 << 20)
        self.reader = BatchReader(self.results)
        self.store = _core.Store.create()
        self.fixtures = FixtureHost(self.store)

    # ---- start ----

    def execute(self) -> RunOutcome:
        collection = [item.nodeid for item in self.items]
        sock = self._bind()
        if self.local_workers:
            self._fork_local_node(sock)
        if sock is not None:
            self.coord = _core.Coordinator.listen_fd(sock.detach(), self.token, collection, self.results)
            where = f"{self.host_name}:{self.coord.port}"
        else:
            try:
                self.coord = _core.Coordinator.connect(self.host_name, self.port, self.token, collection,
                                                       self.results, self.connect_timeout)
            except OSError as e:
                raise self.session.Interrupted(f"pytest-mproc: {e}") from None
            where = f"the coordinator at {self.host_name}:{self.port}"
        self._announce(where)
        self.guard = InterruptGuard()
        self.guard.install()
        self.sigquit = SigquitFlag()
        self.sigquit.install()
        stopped = True
        try:
            if self.fleet is not None:
                self.fleet.wants_hosts = self._wants_hosts
                self.fleet.start(self.host_name, self.coord.port or self.port)
            self._run()
            stopped = False
        except BaseException as e:
            if isinstance(e, KeyboardInterrupt):
                # What the nodes last said they were running: cut off without a result.
                self.outcome.cut_off = [self.items[i].nodeid for _node, running in self.coord.running()
                                        for i in running if not self.outcomes.done[i]]
            self.coord.stop()
            self._end_local_node(kill=True)
            self.stopping = True
            run_ended_by(e, self.reader, self.outcomes, self.outcome)
            raise
        finally:
            self.status.close()
            self.guard.uninstall()
            self.sigquit.uninstall()
            if self.fleet is not None:
                self.fleet.end(stopped)
            self.coord.close()
            self.outcome.fixture_errors += self.fixtures.teardown()
        self.outcome.not_run = self.outcomes.remaining
        return self.outcome

    def _bind(self) -> socket.socket | None:
        """Our listening socket, or None when HOST:PORT is someone else's (a standalone
        coordinator, `pytest_mproc.orchestration.main`)."""
        try:
            family = socket.AF_INET6 if ":" in self.host_name else socket.AF_INET
            return socket.create_server((self.host_name, self.port), family=family, backlog=128)
        except OSError as e:
            if self.port and e.errno in (errno.EADDRINUSE, errno.EADDRNOTAVAIL):
                log(f"{self.host_name}:{self.port} is not ours to serve ({e.strerror}): using it as a coordinator")
                return None
            raise self.session.Interrupted(f"pytest-mproc: cannot listen on {self.host_name}:{self.port}: {e.strerror}") from None

    def _announce(self, where: str) -> None:
        tr = self.config.pluginmanager.getplugin("terminalreporter")
        lines = [f"pytest-mproc: main node serving {len(self.items)} tests on {where}"]
        if self.token_generated and self.fleet is None:  # a fleet's hosts get it over ssh
            lines.append(f"pytest-mproc: worker nodes need PTMPROC_AUTH_TOKEN={self.token.hex()}")
        for line in lines:
            if tr is not None:
                tr.write_line(line)
            else:
                sys.stderr.write(line + "\n")

    def _fork_local_node(self, sock: socket.socket | None) -> None:
        """The main's own workers: a worker node forked from here, connecting over loopback.
        Forked before any coordinator thread exists."""
        host = self.host_name
        if sock is not None:
            host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)
            port = sock.getsockname()[1]
        else:
            port = self.port

        def local_node() -> int:
            if sock is not None:
                sock.close()
            _core.set_parent_death_signal(signal.SIGKILL)
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            NodeRun(self.session, self.local_workers, host, port, self.token, self.connect_timeout,
                    name=f"{socket.gethostname()}:main").execute()
            return 0

        self.local = fork(local_node, "local node")

    def _end_local_node(self, kill: bool) -> None:
        if self.local is None:
            return
        if kill:
            self.local.kill()
        else:
            self.local.wait()

    # ---- the run ----

    def _run(self) -> None:
        # Entries wait for the global fixtures their tests use (set up in order of first use,
        # each value published to every node before the entries that need it).
        globals_needed = FixtureHost.used_by(self.items, GLOBAL)
        pending = [(entry, FixtureHost.used_by((self.items[i] for unit in entry for i in unit), GLOBAL)
                    if globals_needed else ()) for entry in self.entries]
        pending = self._submit_runnable(pending)
        for name in globals_needed:
            self.fixtures.build(name)
            key = f"global:{name}"
            self.coord.publish(key, self.store.get(key))
            pending = self._submit_runnable(pending)
            self._drain()
        self.submitted = True
        alone_since = time.monotonic() if not self.nodes else None
        due = 0.0
        while self.outcomes.remaining and not (self.stopping and not self.nodes):
            with self.guard.handling():
                data = self.reader.try_pop()
                if data is not None:
                    self._handle(data)
            now = time.monotonic()
            if data is not None and now < due:
                continue  # while results flow, what follows runs every CHECK_EVERY, not per result
            due = now + CHECK_EVERY
            if data is None:
                self.reader.wait(0.1)  # woken by the next message (the coordinator's push)
            self.status.tick()
            if self.sigquit.take():
                self.coord.request_reports()  # each node reports its running tests' stacks
            deploying = False
            if self.fleet is not None:
                self.fleet.poll()
                deploying = self.fleet.pending()
                if not (deploying or self.nodes or self.fleet.running() or self.fleet.more_hosts_may_come()):
                    self._give_up("no host of --remote-worker could take part")
            if self.nodes or deploying:
                alone_since = None
            elif alone_since is None:
                alone_since = time.monotonic()
            elif time.monotonic() - alone_since > self.node_wait:
                self._give_up()
        self.coord.finish()
        if not self.coord.wait_nodes_gone(30):
            log("some nodes did not leave within 30 s")
        self._drain()
        self._end_local_node(kill=False)

    def _running(self) -> list[tuple[str, str, float]]:
        """(node, test, seconds) for the status line: what each node last said it runs; the
        seconds count from when the main first saw it running."""
        now = time.monotonic()
        since, out = {}, []
        for node, indices in self.coord.running():
            for i in indices:
                since[i] = self.running_since.get(i, now)
                out.append((node, self.items[i].nodeid, now - since[i]))
        self.running_since = since
        return out

    def _wants_hosts(self) -> bool:
        """A fleet host arriving now would get work (called from the reservation's thread)."""
        if self.stopping or not self.outcomes.remaining:
            return False
        if not getattr(self, "submitted", False):
            return True  # still submitting (global fixtures are being set up)
        queued = self.coord.queued()
        return queued is None or queued > 0

    def _submit_runnable(self, pending: list) -> list:
        """Submits, in order, the entries whose global fixtures are set up; returns the rest."""
        ready, rest = [], []
        for entry, globals_ in pending:
            if all(self.fixtures.ready(g) for g in globals_):
                ready.append(entry)
            else:
                rest.append((entry, globals_))
        if ready:
            self.coord.submit(ready)
        return rest

    def _drain(self) -> None:
        while (data := self.reader.try_pop()) is not None:
            self._handle(data)

    def _handle(self, data: bytes) -> None:
        msg = None if messages.is_event(data) else messages.decode(data)
        if msg is not None and msg[0] in messages.RESULTS:
            self._on_result(msg)
            return
        self.outcomes.freezer.dirty()  # anything else may run a plugin's code (gc_freeze.py)
        if msg is None:
            self._on_event(json.loads(data[1:]))
            return
        kind = msg[0]
        if kind == live_log.LOG:
            live_log.show(self.config, msg)
        elif kind == messages.INTERRUPTED:
            self.outcomes.interrupted(msg, self.outcome)
        elif kind == messages.HANG_REPORT:
            print_report(self.config, "pytest-mproc hang report", msg[1])
        elif kind == messages.WORKER_OUTPUT:
            error = xdist_protocol.node_down(self.config, msg[1], msg[2], msg[3], None)
            if error:
                self.outcome.node_notes.append(error)
        elif kind == WORKER_DIED:
            _, wid, pid, status, running, tail, node = msg
            for index in running:
                self._crash(index, f"{wid} on node {node}", pid, status, tail)

    def _on_result(self, msg: tuple) -> None:
        if self.fleet is not None and self.fleet.first_result is None:
            self.fleet.first_result = time.monotonic()
        if self.outcomes.result(msg):
            self._check_stop()

    def _crash(self, index: int, who: str, pid: int, status: int, tail: str, reason: str | None = None) -> None:
        if self.outcomes.crash(index, who, pid, status, tail, reason):
            self._check_stop()

    def _check_stop(self) -> None:
        if (self.session.shouldfail or self.session.shouldstop) and not self.stopping:
            self.stopping = True
            self.coord.stop()
            log("stop requested: no new tests start on any node")

    def _on_event(self, ev: dict) -> None:
        kind = ev["ev"]
        log(f"coordinator event: {kind} {ev.get('name', '')} {ev.get('reason', '')}")
        if self.fleet is not None:
            self.fleet.on_node_event(ev)
        if kind == "joined":
            self.nodes[ev["node"]] = ev["name"]
            self.config.hook.pytest_mproc_node_joined(config=self.config, node=ev["name"], workers=ev.get("workers", 0))
        elif kind == "left":
            self.nodes.pop(ev["node"], None)
        elif kind == "refused":
            who = ev.get("name") or ev.get("peer") or "a peer"
            self.outcome.node_notes.append(f"refused {who}: {ev['reason']}")
        elif kind == "lost":
            self.nodes.pop(ev["node"], None)
            self.outcome.node_notes.append(f"lost node {ev['name']}: {ev['reason']}")
            self.config.hook.pytest_mproc_node_lost(config=self.config, node=ev["name"], reason=ev["reason"])
            self._on_node_lost(ev)
        elif kind == "coordinator_lost":
            raise self.session.Interrupted(
                f"pytest-mproc: lost the coordinator ({ev['reason']}); {self.outcomes.remaining} tests have no result")

    def _on_node_lost(self, ev: dict) -> None:
        running = set(ev["running"])
        for index in sorted(running):
            self._crash(index, f"node {ev['name']}", 0, 0, "", reason=f"node {ev['name']} was lost: {ev['reason']}")
        if self.stopping:
            return
        entries: list = []
        blocks: dict[int, list] = defaultdict(list)
        for unit in ev["units"]:
            rest = [i for i in unit if not self.outcomes.done[i]]
            if not rest:
                continue
            b = self.block_of.get(rest[0])
            if b is None:
                entries.append([rest])
            else:
                if not blocks[b]:
                    entries.append(blocks[b])
                blocks[b].append(rest)
        if entries:
            log(f"re-queueing {sum(len(e) for e in entries)} units of lost node {ev['name']}")
            self.coord.submit(entries, front=True)

    def _give_up(self, why: str | None = None) -> None:
        missing = self.outcomes.missing()
        shown = ", ".join(missing[:5]) + (", ..." if len(missing) > 5 else "")
        why = why or f"no worker node connected for {self.node_wait:g} s"
        raise self.session.Interrupted(f"pytest-mproc: {why}; {len(missing)} tests not run: {shown}")
