"""The main process of a `--cores` run (xdist's dsession counterpart): it owns the node rings,
starts the fork server, feeds units to the tasks ring, and replays results into pytest's hooks
until every test has a result. Crashed workers are healed, their test reported, their unfinished
units re-queued and a replacement forked."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
import uuid
from collections import deque

import pytest

from . import _core, fixtures, forkserver, messages
from .fixture_host import FixtureHost
from .history import DurationHistory
from .rings import node_rings
from .scheduling import build_entries, build_units
from .replay import Outcomes, describe_status, replay_arrived, stderr_tail
from .verbose import log

# The main does not sleep on the results ring's futex while tests run: every result would
# then cost a futex wake in the worker and a wake-up of the main, which on a machine with as
# many busy workers as cores preempts a worker to replay a single test. It naps instead and
# drains whatever arrived in one go. (On the 2-core VM the two gave the same wall time for
# 2000 trivial tests; napping keeps workers free of wake-up syscalls.)
_NAP_MIN = 0.0005
_NAP_MAX = 0.01


class MprocSession:
    def __init__(self, config, workers: int, multihost=None) -> None:
        """`multihost`: None for a single-host run, else ("main" | "worker", host, port, token,
        token_generated) (see plugin.py)."""
        self.config = config
        self.workers = workers
        self.multihost = multihost
        self.node_notes: list[str] = []
        self.not_run = 0
        self.crashed: list[str] = []
        self.history = DurationHistory(config)
        self.fixture_errors: list[str] = []

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtestloop(self, session):
        if session.testsfailed and not session.config.option.continue_on_collection_errors:
            raise session.Interrupted(
                f"{session.testsfailed} error{'s' if session.testsfailed != 1 else ''} during collection"
            )
        if session.config.option.collectonly or not session.items:
            return True
        if self.multihost is None:
            _Run(self, session, build_units(session.items, self.history)).execute()
        elif self.multihost[0] == "main":
            from .main_node import MultiHostRun

            _, host, port, token, generated = self.multihost
            MultiHostRun(self, session, build_entries(session.items, self.history), host, port,
                         self.workers, token, generated).execute()
        else:
            self._run_worker_node(session)
            return True
        if session.shouldfail:
            raise session.Failed(session.shouldfail)
        if session.shouldstop:
            raise session.Interrupted(session.shouldstop)
        return True

    def _run_worker_node(self, session) -> None:
        from .worker_node import NodeError, NodeRun

        _, host, port, token, _ = self.multihost
        node = NodeRun(session, self.workers, host, port, token, self.config.getoption("mproc_connect_timeout"))
        try:
            node.execute()
        except NodeError as e:
            raise session.Interrupted(f"pytest-mproc worker node: {e}") from None
        finally:
            self.fixture_errors += node.fixture_errors
        tr = self.config.pluginmanager.getplugin("terminalreporter")
        if tr is not None:
            tr.write_line(f"pytest-mproc: worker node done; results are reported by the main at {host}:{port}")

    def pytest_collection_finish(self, session):
        fixtures.validate()

    def pytest_runtest_logreport(self, report):
        self.history.record(report)

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionfinish(self, session):
        self.history.save()
        if self.fixture_errors and session.exitstatus == 0:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_terminal_summary(self, terminalreporter):
        for text in self.fixture_errors:
            terminalreporter.write_sep("=", "pytest-mproc fixture teardown error", red=True)
            terminalreporter.write_line(text.rstrip())
        for note in self.node_notes:
            terminalreporter.write_line(f"pytest-mproc: {note}", yellow=True)
        if self.not_run:
            terminalreporter.write_line(
                f"pytest-mproc: {self.not_run} test{'s' if self.not_run != 1 else ''} not run "
                f"(the run was stopped early)", yellow=True
            )


class _Run:
    """One execution of the collected items."""

    def __init__(self, owner: MprocSession, session, units: list[list[int]]) -> None:
        self.owner = owner
        self.session = session
        self.config = session.config
        self.items = session.items
        self.pending = deque(units)
        self.outcomes = Outcomes(session, owner.crashed)
        self.workers = min(owner.workers, len(units))
        self.live: dict[str, int] = {}
        self.stopping = False
        self.rundir = tempfile.mkdtemp(prefix="pytest-mproc-")
        self.tasks, self.results = node_rings(len(units), self.workers)
        self.store = _core.Store.create()
        self.host = FixtureHost(self.store)
        # Which global/node fixtures each unit needs: a unit is queued only once they are set up.
        self.needs: dict[tuple, list[str]] = {}

    def execute(self) -> None:
        factory = getattr(self.config, "_tmp_path_factory", None)
        if factory is not None:
            factory.getbasetemp()  # one run root, made before fork; workers get a subdir each
        self._feed()
        self.fs = forkserver.start(self.session, self.workers, self.tasks, self.results, self.store,
                                   self.rundir, uuid.uuid4().hex)
        log(f"fork server pid {self.fs.pid}, {self.workers} workers, {len(self.items)} tests")
        self.worker_stats: list = []
        try:
            t0, w0 = time.process_time(), time.monotonic()
            self._setup_fixtures()
            self._loop()
            cpu, wall = time.process_time() - t0, time.monotonic() - w0
            log(f"main loop cpu {cpu:.2f}s wall {wall:.2f}s")
            self._finish()
        except BaseException as e:
            self.tasks.abort()
            self.fs.kill()
            if isinstance(e, KeyboardInterrupt):
                self._replay_finished()
            raise
        finally:
            self.owner.fixture_errors += self.host.teardown()
            shutil.rmtree(self.rundir, ignore_errors=True)
        self.owner.not_run = self.outcomes.remaining
        self._write_stats(cpu, wall)

    def _write_stats(self, cpu: float, wall: float) -> None:
        path = os.environ.get("PTMPROC_STATS_FILE")
        if not path:
            return
        import resource

        stats = {
            "tests": len(self.items),
            "workers": self.workers,
            "main_loop_cpu_s": cpu,
            "main_loop_wall_s": wall,
            "main_max_rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
            "worker_cpu_s": [w[0] for w in self.worker_stats],
            "worker_max_rss_kb": [w[1] for w in self.worker_stats],
            "worker_pss_kb": [w[2] for w in self.worker_stats],
        }
        with open(path, "w") as f:
            json.dump(stats, f)

    def _setup_fixtures(self) -> None:
        """Sets up global/node fixtures in order of first use, queueing the units that become
        runnable after each one; results arriving meanwhile are replayed."""
        order = []
        for unit in self.pending:
            for name in self._needs(unit):
                if name not in order:
                    order.append(name)
        for name in order:
            self.host.build(name)
            self._feed()
            self._drain()

    def _replay_finished(self) -> None:
        """After Ctrl-C (workers already killed): report what had finished, for the summary."""
        self.stopping = True  # nothing is queued any more
        replay_arrived(self.results, self._on_result)

    def _drain(self) -> None:
        while (data := self.results.try_pop()) is not None:
            self._handle(messages.decode(data))

    def _needs(self, unit) -> list[str]:
        key = tuple(unit)
        names = self.needs.get(key)
        if names is None:
            names = self.needs[key] = sorted({n for i in unit for n in FixtureHost.needed_by(self.items[i])})
        return names

    def _runnable(self, unit) -> bool:
        return all(self.host.ready(n) for n in self._needs(unit))

    def _feed(self) -> None:
        """Queues pending units, in order, whose fixtures are set up, while the ring has room."""
        if self.stopping:
            return
        blocked = []
        while self.pending:
            unit = self.pending[0]
            if not self._runnable(unit):
                blocked.append(self.pending.popleft())
                continue
            if not self.tasks.try_push(messages.encode_unit(unit)):
                break
            self.pending.popleft()
        self.pending.extendleft(reversed(blocked))

    def _loop(self) -> None:
        try_pop = self.results.try_pop
        decode = messages.decode
        nap = _NAP_MIN
        while self.outcomes.remaining and not (self.stopping and not self.live):
            data = try_pop()
            if data is None:
                if not self.fs.alive():
                    raise self.session.Interrupted(
                        f"pytest-mproc: the fork server died ({describe_status(self.fs.exit_status)}); "
                        f"{self.outcomes.remaining} tests have no result"
                    )
                time.sleep(nap)
                nap = min(nap * 2, _NAP_MAX)
                continue
            nap = _NAP_MIN
            self._handle(decode(data))

    def _handle(self, msg: tuple) -> None:
        kind = msg[0]
        if kind == messages.RESULT:
            self._on_result(msg[2], msg[3], msg[4], msg[5])
        elif kind == messages.UP:
            self.live[msg[1]] = msg[2]
        elif kind == messages.DIED:
            self._on_died(msg[1], msg[2], msg[3])
        elif kind == messages.FINISHED:
            self.worker_stats.append(msg[2:])
        elif kind == messages.INTERNAL:
            raise self.session.Interrupted(f"pytest-mproc: internal error in worker {msg[1]}:\n{msg[2]}")

    def _on_result(self, index: int, reports: list, warnings: list, location: tuple) -> None:
        if not self.outcomes.result(index, reports, warnings, location):
            return
        self.fs.progress()
        if (self.session.shouldfail or self.session.shouldstop) and not self.stopping:
            self._stop()
        else:
            self._feed()

    def _stop(self) -> None:
        """-x / --maxfail reached: no new test starts anywhere; running ones finish."""
        self.stopping = True
        self.tasks.abort()
        log("stop requested: no new tests start")

    def _on_died(self, wid: str, pid: int, status: int) -> None:
        self.live.pop(wid, None)
        items, leases, _, _ = self.tasks.heal(pid)
        self.results.heal(pid)
        crashed = None
        for _slot, _pid, key, _started in leases:
            if key is not None and not self.outcomes.done[key]:
                crashed = key
        if crashed is not None:
            tail = stderr_tail(os.path.join(self.rundir, f"{wid}.stderr"))
            log(f"worker {wid} (pid {pid}) {describe_status(status)} in {self.items[crashed].nodeid}")
            self.outcomes.crash(crashed, wid, pid, status, tail)
            if self.session.shouldfail or self.session.shouldstop:
                self._stop()
        elif status != 0:
            log(f"worker {wid} (pid {pid}) {describe_status(status)} between tests")
            if self.fs.crash_loop():
                tail = stderr_tail(os.path.join(self.rundir, f"{wid}.stderr")).rstrip()
                raise self.session.Interrupted(
                    f"pytest-mproc: workers keep dying outside any test (last: {wid} {describe_status(status)}); "
                    f"{self.outcomes.remaining} tests have no result" + (f"\n{tail}" if tail else "")
                )
        for raw in items:
            unit = [i for i in messages.decode_unit(raw) if not self.outcomes.done[i]]
            if unit:
                self.pending.appendleft(unit)
        if self.outcomes.remaining and not self.stopping:
            self._feed()
            if not self.tasks.closed:
                log(f"replacing worker with {self.fs.replace()}")

    def _finish(self) -> None:
        """Every test has a result (or the run stopped): let workers exit, then the server."""
        self.tasks.close()
        self.fs.shutdown()
        deadline = time.monotonic() + 30
        nap = _NAP_MIN
        while self.fs.alive() and time.monotonic() < deadline:
            data = self.results.try_pop()
            if data is None:
                time.sleep(nap)
                nap = min(nap * 2, _NAP_MAX)
                continue
            nap = _NAP_MIN
            self._handle(messages.decode(data))
        if self.fs.alive():
            log("workers did not exit in time; killing them")
            self.fs.kill()
