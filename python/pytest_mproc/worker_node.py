"""A worker node of a multi-host run (`--as-worker HOST:PORT --cores N`; the main's own local
workers run as one too). The node collects once and runs its workers exactly as a single-host
run does (supervisor.py), and forks the bridge process (Rust) that fills the node's tasks ring
from the main's queue and forwards the workers' results upstream. This process sets up node
fixtures, reports crashed tests upstream (the main replays them), and ends everything when the
run is over or the bridge is gone."""

from __future__ import annotations

import os
import signal
import socket
import time

from . import _core, messages
from .child import Child, fork
from .fixture_host import FixtureHost
from .fixtures import NODE
from .replay import RunOutcome, describe_status
from .hang_report import HangWatch
from .supervisor import Supervisor, SupervisorError
from .verbose import log

# What the bridge process writes before it exits, for this process's error message.
_STATUS_FILE = "bridge.status"
# The node reports a test that crashed its worker (see main_node.py).
WORKER_DIED = "W"


class NodeError(Exception):
    """The node cannot go on (refused, main unreachable or lost, fork server died)."""


class NodeRun:
    def __init__(self, session, workers: int, host: str, port: int, token: bytes,
                 connect_timeout: float, name: str | None = None) -> None:
        self.session = session
        self.items = session.items
        self.workers = workers
        self.addr = (host, port)
        self.token = token
        self.connect_timeout = connect_timeout
        self.name = name or f"{socket.gethostname()}:{os.getpid()}"
        self.node = Supervisor(session, workers, self._crashed, remote_global=self._wait_global,
                               separate_control=True, name=self.name)
        self.bridge: Child | None = None
        # Hang reports go to the main, which prints them.
        self.watch = HangWatch(self.node, session.config.getoption("mproc_hang_report"),
                               lambda text: self.node.results.push(messages.encode((messages.HANG_REPORT, text))))

    def execute(self) -> RunOutcome:
        """Runs the node until the main says the run is over; NodeError if it cannot."""
        node = self.node
        outcome = RunOutcome()
        os.environ["PTMPROC_NODE_NAME"] = self.name  # the workers tag their results with it
        node.start()
        self._start_bridge()
        log(f"node {self.name}: fork server {node.fs.pid}, bridge {self.bridge.pid}, {self.workers} workers")
        try:
            for name in FixtureHost.used_by(self.items, NODE):
                node.fixtures.build(name)
            node.tasks.user_set(_core.BRIDGE_READY_WORD, 1)
            self._supervise()
        except SupervisorError as e:
            node.kill()
            self._kill_bridge()
            raise NodeError(str(e)) from None
        except BaseException:
            node.kill()
            self._kill_bridge()
            raise
        finally:
            outcome.fixture_errors += node.close()
        return outcome

    def _crashed(self, index: int, wid: str, pid: int, status: int, tail: str) -> None:
        # The main reports the test as crashed (it has every result that came before).
        self.node.results.push(messages.encode((WORKER_DIED, wid, pid, status, [index], tail, self.name)))

    # ---- the bridge ----

    def _start_bridge(self) -> None:
        collection = [item.nodeid for item in self.items]
        node = self.node

        def bridge() -> int:
            # The inherited command pipe of the fork server is the node's to close, not ours.
            node.fs.shutdown()
            _core.set_parent_death_signal(signal.SIGKILL)
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            code, message = _core.run_bridge(self.addr[0], self.addr[1], self.token, self.name, self.workers,
                                             collection, node.tasks, node.results, node.store,
                                             self.connect_timeout)
            with open(os.path.join(node.rundir, _STATUS_FILE), "w") as f:
                f.write(message)
            return code

        self.bridge = fork(bridge, "bridge")

    def _bridge_message(self) -> str:
        try:
            with open(os.path.join(self.node.rundir, _STATUS_FILE)) as f:
                return f.read().strip()
        except OSError:
            return f"the bridge process {describe_status(self.bridge.exit_status or 0)}"

    def _kill_bridge(self) -> None:
        if self.bridge is not None:
            self.bridge.kill()

    def _check_bridge(self) -> None:
        status = self.bridge.exit_status if not self.bridge.alive() else None
        if status is not None and os.waitstatus_to_exitcode(status) != 0:
            raise NodeError(self._bridge_message())

    def _wait_global(self, key: str) -> bytes:
        """A global fixture's value, once the bridge stored what the main published."""
        nap = 0.001
        while (data := self.node.store.get(key)) is None:
            if not self.bridge.alive():
                raise NodeError(self._bridge_message())
            time.sleep(nap)  # the value arrives over the network; nothing to wait on locally
            nap = min(nap * 2, 0.05)
        return data

    # ---- supervising ----

    def _pump(self, timeout: float = 0) -> bool:
        """Handles one worker life-cycle message; False if none came within `timeout`."""
        data = self.node.control.pop(timeout=timeout) if timeout else self.node.control.try_pop()
        if data is None:
            return False
        self.node.handle(messages.decode(data))
        return True

    def _pump_or_check_bridge(self, timeout: float = 0) -> bool:
        if self._pump(timeout):
            return True
        self._check_bridge()
        return False

    def _supervise(self) -> None:
        """Handles worker life-cycle messages until the bridge closes the queue (the run is
        over), lets the workers finish, then lets the bridge send the last results."""
        node = self.node
        reports_asked = node.tasks.user_get(_core.BRIDGE_REPORT_WORD)
        while not node.tasks.closed:
            if self._pump(timeout=0.05):
                continue
            self._check_bridge()
            node.feed()
            self.watch.check()
            asked = node.tasks.user_get(_core.BRIDGE_REPORT_WORD)
            if asked != reports_asked:  # SIGQUIT on the main
                reports_asked = asked
                self.watch.report_all("SIGQUIT on the main")
            if not node.tasks.closed:
                node.check_fork_server()
        # Closed by the bridge: the run is over, or the bridge failed (refused, main lost); in
        # that case the workers are killed at once rather than let finish their tests.
        node.wind_down(self._pump_or_check_bridge)
        node.results.close()  # the bridge sends what is left and says goodbye
        node.reap()
        self.bridge.wait()
        self._check_bridge()
