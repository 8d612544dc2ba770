"""One node's workers: the rings, the fixture store, the fork server and what happens when a
worker dies. The single-host run is one node (single_host.py); each worker node of a multi-host
run is one too (worker_node.py). Both use this class; they differ only in where a crashed test
is reported (`report_crash`: replayed into the local pytest hooks on a single host, sent
upstream to the main from a worker node).

The rules, in one place:
- A worker that dies while running test T (its lease names T): T is reported as crashed, with
  the worker's exit status and the tail of its stderr file. The tests of its unit after T go
  back to the front of the node's queue; those before T have results already (a worker sends a
  test's result before it starts the next).
- A worker that dies outside any test hands back the units it had taken; dying that way again
  and again with no test finishing in between is a crash loop: the node gives up.
- A dead worker is replaced while the queue is open; at the end workers get `EXIT_GRACE`
  seconds to finish their teardown, then are killed.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
import uuid
from collections import deque

from . import _core, forkserver, gc_freeze, messages
from .fixture_host import FixtureHost
from .replay import describe_status, stderr_tail
from .rings import lease_entries, node_rings
from .verbose import log

# How long workers may take to finish their teardown once the run is over.
EXIT_GRACE = 30.0
# How often a waiting controller looks at the fork server, hung tests, the status line and
# Ctrl-\\ (between these it sleeps on the results ring's futex, or polls, see single_host.py).
CHECK_EVERY = 0.01


class SupervisorError(Exception):
    """The node cannot go on (fork server died, crash loop, internal error in a worker)."""


class Supervisor:
    def __init__(self, session, workers: int, report_crash, remote_global=None,
                 separate_control: bool = False, name: str = "") -> None:
        """`report_crash(index, wid, pid, status, stderr_tail)`: test `index` crashed its worker.
        `remote_global(key) -> bytes`: on a worker node, where global fixture values come from.
        `separate_control`: worker life-cycle messages get their own ring (on a worker node the
        bridge consumes `results`); otherwise they travel with the results."""
        self.session = session
        self.config = session.config
        self.items = session.items
        self.workers = workers
        self.report_crash = report_crash
        self.name = name
        self.rundir = tempfile.mkdtemp(prefix="pytest-mproc-")
        self.tasks, self.results = node_rings(len(self.items), workers)
        self.control = (_core.Ring.create(capacity=256, slot_size=512, leases=lease_entries(workers),
                                          arena_bytes=16 << 20) if separate_control else self.results)
        self.store = _core.Store.create()
        self.fixtures = FixtureHost(self.store, remote_global=remote_global)
        self.pending: deque[list[int]] = deque()
        self._needs: dict[tuple, list[str]] = {}
        self.live: dict[str, int] = {}
        # Workers that said they are done (FINISHED) or were reported dead (DIED).
        self.workers_done: set[str] = set()
        self.worker_stats: list = []
        self.fs: forkserver.ForkServer | None = None

    # ---- start and end ----

    def start(self, units=()) -> None:
        """Queues `units` (as far as their fixtures allow) and forks the fork server."""
        factory = getattr(self.config, "_tmp_path_factory", None)
        if factory is not None:
            factory.getbasetemp()  # one run root, made before fork; workers get a subdir each
        self.pending.extend(units)
        self.feed()
        gc_freeze.after_collection()
        self.fs = forkserver.start(self.session, self.workers, self.tasks, self.results, self.store,
                                   self.rundir, uuid.uuid4().hex, control=self.control)
        log(f"fork server pid {self.fs.pid}, {self.workers} workers, {len(self.items)} tests")

    def wind_down(self, pump) -> None:
        """The queue is done: workers finish their last unit and exit; `pump(timeout)` handles
        a message meanwhile, waiting up to `timeout` seconds for one (True if it handled one),
        and what they sent before they exited (their plugins' output, statistics). Returns once
        every worker the fork server was asked for has said it is done (FINISHED, its last
        message) or is gone: their exits and the server's own (tearing down a copy of the
        main's memory) go on meanwhile, and `reap()` collects them later. Workers still there
        after EXIT_GRACE are killed."""
        self.tasks.close()
        self.fs.shutdown()  # no replacements; the server ends once its workers have
        deadline = time.monotonic() + EXIT_GRACE
        while self.fs.alive() and not self.all_done():
            if time.monotonic() > deadline:
                log(f"workers did not exit within {EXIT_GRACE:g} s; killing them")
                self.fs.kill()
                break
            pump(CHECK_EVERY)  # woken by each FINISHED / DIED
        while pump():
            pass

    def all_done(self) -> bool:
        """Every worker the fork server was asked for said FINISHED or was reported dead."""
        return self.workers_done.issuperset(self.fs.wids)

    def reap(self) -> None:
        """Waits for the fork server (which waits for its workers) after `wind_down`; kills it
        and its workers after EXIT_GRACE."""
        if self.fs is not None:
            self.fs.reap(EXIT_GRACE, group=True)

    def kill(self) -> None:
        """Ctrl-C or a fatal error: no new test starts, every worker ends now."""
        self.tasks.abort()
        if self.fs is not None:
            self.fs.kill()

    def close(self) -> list[str]:
        """After the workers are gone: fixture teardown (errors returned), run directory removed."""
        try:
            return self.fixtures.teardown()
        finally:
            shutil.rmtree(self.rundir, ignore_errors=True)

    def check_fork_server(self) -> None:
        if not self.fs.alive():
            raise SupervisorError(f"the fork server died ({describe_status(self.fs.exit_status)})")

    # ---- feeding ----

    def needs(self, unit) -> list[str]:
        """The global/node fixtures `unit`'s tests use."""
        key = tuple(unit)
        names = self._needs.get(key)
        if names is None:
            names = self._needs[key] = sorted({n for i in unit for n in FixtureHost.needed_by(self.items[i])})
        return names

    def feed(self) -> None:
        """Queues pending units, in order, whose fixtures are set up, while the ring has room."""
        if self.tasks.closed:
            return
        blocked = []
        while self.pending:
            unit = self.pending[0]
            if not all(self.fixtures.ready(n) for n in self.needs(unit)):
                blocked.append(self.pending.popleft())
                continue
            if not self.tasks.try_push(messages.encode_unit(unit)):
                break
            self.pending.popleft()
        self.pending.extendleft(reversed(blocked))

    def stop(self) -> None:
        """-x / --maxfail / interrupt: no new test starts anywhere on this node."""
        self.tasks.abort()
        log("stop requested: no new tests start")

    # ---- worker life cycle ----

    def handle(self, msg: tuple) -> bool:
        """Handles a life-cycle message; False if it is not one (a result)."""
        kind = msg[0]
        if kind == messages.UP:
            self.live[msg[1]] = msg[2]
            self.config.hook.pytest_mproc_worker_started(config=self.config, worker_id=msg[1], pid=msg[2],
                                                         node=self.name)
        elif kind == messages.DIED:
            self.worker_died(msg[1], msg[2], msg[3])
        elif kind == messages.FINISHED:
            self.workers_done.add(msg[1])
            self.worker_stats.append(msg[2:])
        elif kind == messages.INTERNAL:
            raise SupervisorError(f"internal error in worker {msg[1]}:\n{msg[2]}")
        else:
            return False
        return True

    def stderr_tail(self, wid: str) -> str:
        return stderr_tail(os.path.join(self.rundir, f"{wid}.stderr"))

    def worker_died(self, wid: str, pid: int, status: int) -> None:
        self.live.pop(wid, None)
        self.workers_done.add(wid)
        items, leases, _, _ = self.tasks.heal(pid)
        self.results.heal(pid)
        if self.control is not self.results:
            self.control.heal(pid)
        running = next((key for _slot, _pid, key, _started in leases if key is not None), None)
        if status != 0:
            self.config.hook.pytest_mproc_worker_crashed(
                config=self.config, worker_id=wid, pid=pid,
                nodeid=self.items[running].nodeid if running is not None else None,
                exit_status=describe_status(status), stderr_tail=self.stderr_tail(wid), node=self.name)
        if running is not None:
            log(f"worker {wid} (pid {pid}) {describe_status(status)} in {self.items[running].nodeid}")
            self.report_crash(running, wid, pid, status, self.stderr_tail(wid))
            self.fs.progress()
        elif status != 0:
            log(f"worker {wid} (pid {pid}) {describe_status(status)} between tests")
        rest = []
        for raw in items:
            unit = messages.decode_unit(raw)
            if running in unit:
                unit = unit[unit.index(running) + 1:]
            if unit:
                rest.append(unit)
        self.pending.extendleft(reversed(rest))
        self.feed()
        if status == 0 or self.tasks.closed:
            return
        if running is None and self.fs.crash_loop():
            tail = self.stderr_tail(wid).rstrip()
            raise SupervisorError(f"workers keep dying outside any test (last: {wid} {describe_status(status)})"
                                  + (f"\n{tail}" if tail else ""))
        log(f"replacing worker {wid} with {self.fs.replace()}")
