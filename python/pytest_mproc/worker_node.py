"""A worker node of a multi-host run (`--as-worker HOST:PORT --cores N`; the main's own local
workers run as one too). The node collects once, forks its fork server and workers exactly as a
single-host run does, and forks the bridge process (Rust) that fills the node's tasks ring from
the main's queue and forwards the workers' results upstream. This process supervises: it sets up
node fixtures, reports dead workers upstream (the main decides what that means for their tests),
forks replacements, and ends everything when the run is over or the bridge is gone."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import tempfile
import time
import uuid

from . import _core, forkserver, messages
from .child import Child, fork
from .fixture_host import FixtureHost
from .fixtures import NODE
from .replay import describe_status, stderr_tail
from .rings import lease_entries, node_rings
from .verbose import log

# What the bridge process writes before it exits, for this process's error message.
_STATUS_FILE = "bridge.status"
# How long workers may take to finish their teardown once the run is over (as on one host).
_EXIT_GRACE = 30.0
# The node reports a worker that died, with what `heal` found (see main_node.py).
WORKER_DIED = "W"


class NodeError(Exception):
    """The node cannot go on (refused, main unreachable or lost, fork server died)."""


class NodeRun:
    def __init__(self, session, workers: int, host: str, port: int, token: bytes,
                 connect_timeout: float, name: str | None = None) -> None:
        self.session = session
        self.config = session.config
        self.items = session.items
        self.workers = workers
        self.addr = (host, port)
        self.token = token
        self.connect_timeout = connect_timeout
        self.name = name or f"{socket.gethostname()}:{os.getpid()}"
        self.rundir = tempfile.mkdtemp(prefix="pytest-mproc-node-")
        self.tasks, self.results = node_rings(len(self.items), workers)
        # Worker life-cycle messages for this process (the bridge consumes `results`).
        self.control = _core.Ring.create(capacity=256, slot_size=512, leases=lease_entries(workers),
                                       arena_bytes=16 << 20)
        self.store = _core.Store.create()
        self.host = FixtureHost(self.store, remote_global=self._wait_global)
        self.bridge: Child | None = None
        self.fixture_errors: list[str] = []

    # ---- life cycle ----

    def execute(self) -> None:
        """Runs the node until the main says the run is over; NodeError if it cannot."""
        factory = getattr(self.config, "_tmp_path_factory", None)
        if factory is not None:
            factory.getbasetemp()
        self.fs = forkserver.start(self.session, self.workers, self.tasks, self.results, self.store,
                                   self.rundir, uuid.uuid4().hex, control=self.control)
        self._start_bridge()
        log(f"node {self.name}: fork server {self.fs.pid}, bridge {self.bridge.pid}, {self.workers} workers")
        try:
            for name in FixtureHost.used_by(self.items, NODE):
                self.host.build(name)
            self.tasks.user_set(_core.BRIDGE_READY_WORD, 1)
            self._supervise()
        except BaseException:
            self.tasks.abort()
            self.fs.kill()
            self._kill_bridge()
            raise
        finally:
            self.fixture_errors += self.host.teardown()
            shutil.rmtree(self.rundir, ignore_errors=True)

    def _start_bridge(self) -> None:
        collection = [item.nodeid for item in self.items]

        def bridge() -> int:
            # Not ours to hold: the fork server ends when this process's parent closes it.
            self.fs.forget_in_child()
            _core.set_parent_death_signal(signal.SIGKILL)
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            code, message = _core.run_bridge(self.addr[0], self.addr[1], self.token, self.name, self.workers,
                                             collection, self.tasks, self.results, self.store, self.connect_timeout)
            with open(os.path.join(self.rundir, _STATUS_FILE), "w") as f:
                f.write(message)
            return code

        self.bridge = fork(bridge, "bridge")

    def _bridge_message(self) -> str:
        try:
            with open(os.path.join(self.rundir, _STATUS_FILE)) as f:
                return f.read().strip()
        except OSError:
            return f"the bridge process {describe_status(self.bridge.exit_status or 0)}"

    def _kill_bridge(self) -> None:
        if self.bridge is not None:
            self.bridge.kill()

    def _bridge_failed(self) -> bool:
        status = self.bridge.exit_status
        return status is not None and os.waitstatus_to_exitcode(status) != 0

    def _wait_global(self, key: str) -> bytes:
        """A global fixture's value, once the bridge stored what the main published."""
        nap = 0.001
        while (data := self.store.get(key)) is None:
            if not self.bridge.alive():
                raise NodeError(self._bridge_message())
            time.sleep(nap)  # the value arrives over the network; nothing to wait on locally
            nap = min(nap * 2, 0.05)
        return data

    def _supervise(self) -> None:
        """Handles worker life-cycle messages until the workers are gone, then lets the bridge
        send the last results."""
        shut_at = None
        while True:
            data = self.control.pop(timeout=0.05)
            if data is not None:
                self._handle(messages.decode(data))
                continue
            if not self.bridge.alive() and self._bridge_failed():
                self.tasks.abort()
                self.fs.kill()
                raise NodeError(self._bridge_message())
            if self.tasks.closed and shut_at is None:
                self.fs.shutdown()  # no replacements; the server ends once its workers have
                shut_at = time.monotonic()
            elif shut_at is not None and time.monotonic() - shut_at > _EXIT_GRACE:
                log(f"node {self.name}: workers did not exit within {_EXIT_GRACE:g} s; killing them")
                self.fs.kill()
            if not self.fs.alive():
                if shut_at is None and not self.tasks.closed:
                    self._kill_bridge()
                    raise NodeError(f"the fork server {describe_status(self.fs.exit_status)}")
                break
        while (data := self.control.try_pop()) is not None:
            self._handle(messages.decode(data))
        self.results.close()  # the bridge sends what is left and says goodbye
        self.bridge.wait()

    def _handle(self, msg: tuple) -> None:
        kind = msg[0]
        if kind == messages.DIED:
            self._on_died(msg[1], msg[2], msg[3])
        elif kind == messages.INTERNAL:
            raise NodeError(f"internal error in worker {msg[1]}:\n{msg[2]}")

    def _on_died(self, wid: str, pid: int, status: int) -> None:
        items, leases, _, _ = self.tasks.heal(pid)
        self.results.heal(pid)
        self.control.heal(pid)
        running = [key for _slot, _pid, key, _started in leases if key is not None]
        if running:
            tail = stderr_tail(os.path.join(self.rundir, f"{wid}.stderr"))
            log(f"node {self.name}: worker {wid} (pid {pid}) {describe_status(status)} in test {running}")
            # The main reports the test as crashed (it has every result that came before).
            self.results.push(messages.encode((WORKER_DIED, wid, pid, status, running, tail, self.name)))
        # What it had taken and not finished stays on this node: the tests of its unit before
        # the one it died in have results; those after it have not started.
        for raw in items:
            unit = messages.decode_unit(raw)
            rest = unit[unit.index(running[0]) + 1:] if running and running[0] in unit else unit
            if rest and not self.tasks.closed:
                self.tasks.push(messages.encode_unit(rest))
        if status == 0 or self.tasks.closed:
            return
        if running:
            self.fs.progress()
        elif self.fs.crash_loop():
            tail = stderr_tail(os.path.join(self.rundir, f"{wid}.stderr")).rstrip()
            raise NodeError(f"workers keep dying outside any test (last: {wid} {describe_status(status)})"
                            + (f"\n{tail}" if tail else ""))
        log(f"node {self.name}: replacing worker with {self.fs.replace()}")
