"""The controller of a single-host `--cores` run (xdist's dsession counterpart): one node
(supervisor.py) whose results are replayed into this process's pytest hooks until every test
has a result."""

from __future__ import annotations

import json
import os
import time

from _pytest.outcomes import Exit

from . import live_log, messages, xdist_protocol
from .hang_report import HangWatch, SigquitFlag
from .status_line import StatusLine
from .interrupt_guard import InterruptGuard
from .history import DurationHistory
from .replay import Outcomes, RunOutcome, print_report, run_ended_by
from .rings import BatchReader
from .scheduling import build_units
from .polling import Pace
from .supervisor import CHECK_EVERY, Supervisor, SupervisorError
from .verbose import log


class SingleHostRun:
    def __init__(self, session, workers: int, history: DurationHistory) -> None:
        self.session = session
        self.config = session.config
        self.items = session.items
        units = build_units(session.items, history)
        self.outcome = RunOutcome()
        self.outcomes = Outcomes(session, self.outcome, rerun=self._rerun, history=history)
        self.stopping = False
        self.stop_on_failure = bool(self.config.getoption("maxfail", 0))
        self.loop_faults: int | None = None  # the main loop's page faults (PTMPROC_STATS_FILE)
        self.node = Supervisor(session, min(workers, len(units)), self._crashed)
        self.results = BatchReader(self.node.results)
        self.pace = Pace(self.node.results.capacity)
        self.units = units
        self.watch = HangWatch(self.node, self.config.getoption("mproc_hang_report"),
                               lambda text: print_report(self.config, "pytest-mproc hang report", text))
        self.sigquit = SigquitFlag()
        self.guard = InterruptGuard()
        self.status = StatusLine(self.config, lambda: [(wid, self.items[key].nodeid, secs)
                                                       for wid, _pid, key, secs in self.watch.running()])

    def execute(self) -> RunOutcome:
        node = self.node
        node.start(self.units)
        t0, w0, f0 = time.process_time(), time.monotonic(), _minor_faults()
        self.sigquit.install()
        self.guard.install()
        try:
            try:
                self._setup_fixtures()
                self._loop()
                cpu, wall = time.process_time() - t0, time.monotonic() - w0
                self.loop_faults = _minor_faults() - f0
                log(f"main loop cpu {cpu:.2f}s wall {wall:.2f}s")
                node.wind_down(self._pump)
                # The workers and the fork server finish exiting while the summary is written.
                self.outcome.at_end.append(node.reap)
            except SupervisorError as e:
                raise self.session.Interrupted(
                    f"pytest-mproc: {e}; {self.outcomes.remaining} tests have no result") from None
        except BaseException as e:
            if isinstance(e, KeyboardInterrupt):
                self.outcome.cut_off = self.watch.report_all("the run was interrupted")
            elif isinstance(e, Exit):  # pytest.exit() in a test: where the others were is no news
                self.outcome.cut_off = [self.items[key].nodeid for _w, _p, key, _s in self.watch.running()
                                        if not self.outcomes.done[key]]
            node.kill()
            self.stopping = True
            run_ended_by(e, self.results, self.outcomes, self.outcome)
            raise
        finally:
            self.status.close()
            self.guard.uninstall()
            self.sigquit.uninstall()
            self.outcome.fixture_errors += node.close()
        self.outcome.not_run = self.outcomes.remaining
        self._write_stats(cpu, wall)
        return self.outcome

    def _setup_fixtures(self) -> None:
        """Sets up global/node fixtures in order of first use, queueing the units that become
        runnable after each one; results arriving meanwhile are replayed."""
        order: dict[str, None] = {}
        for unit in self.node.pending:
            for name in self.node.needs(unit):
                order.setdefault(name)
        for name in order:
            self.node.fixtures.build(name)
            self.node.feed()
            while self._pump():
                pass

    def _pump(self, timeout: float = 0) -> bool:
        """Handles one message from the results ring, waiting up to `timeout` seconds for one;
        False if none came."""
        if timeout and not self.results.wait(timeout):
            return False
        with self.guard.handling():
            data = self.results.try_pop()
            if data is None:
                return False
            self._handle(messages.decode(data))
        return True

    def _handle(self, msg: tuple) -> None:
        if msg[0] in messages.RESULTS:
            self._on_result(msg)
            return
        self.outcomes.freezer.dirty()  # anything else may run a plugin's code (gc_freeze.py)
        if msg[0] == live_log.LOG:
            live_log.show(self.config, msg)
        elif msg[0] == messages.INTERRUPTED:
            self.outcomes.interrupted(msg, self.outcome)
        elif msg[0] == messages.WORKER_OUTPUT:
            error = xdist_protocol.node_down(self.config, msg[1], msg[2], msg[3], None)
            if error:
                self.outcome.node_notes.append(error)
        else:
            self.node.handle(msg)

    def _loop(self) -> None:
        due = 0.0
        while self.outcomes.remaining and not (self.stopping and not self.node.live):
            if self._pump():
                continue
            now = time.monotonic()
            if now >= due:
                due = now + CHECK_EVERY
                self.node.check_fork_server()
                self.watch.check()
                self.status.tick()
                if self.sigquit.take():
                    self.watch.report_all("SIGQUIT")
            self._wait()

    def _wait(self) -> None:
        """Waits for results: mid-run a nap (polling.py), after which what came meanwhile is
        replayed as a batch; the last tests' results (fewer left than workers), and every result
        of a run that stops at a failure (-x, --maxfail), are taken as they arrive."""
        if self.outcomes.remaining <= self.node.workers or self.stop_on_failure:
            self.results.wait(CHECK_EVERY)
        else:
            time.sleep(self.pace.nap(self.outcomes.remaining))

    def _on_result(self, msg: tuple) -> None:
        if not self.outcomes.result(msg):
            return
        self.node.fs.progress()
        self._check_stop()
        if self.node.pending:  # units waiting for room in the tasks ring
            self.node.feed()

    def _rerun(self, index: int) -> None:
        self.node.pending.appendleft([index])
        self.node.feed()

    def _crashed(self, index: int, wid: str, pid: int, status: int, tail: str) -> None:
        if self.outcomes.crash(index, wid, pid, status, tail):
            self._check_stop()

    def _check_stop(self) -> None:
        if (self.session.shouldfail or self.session.shouldstop) and not self.stopping:
            self.stopping = True
            self.node.stop()

    def _write_stats(self, cpu: float, wall: float) -> None:
        path = os.environ.get("PTMPROC_STATS_FILE")
        if not path:
            return
        import resource

        stats = {
            "tests": len(self.items),
            "workers": self.node.workers,
            "main_loop_cpu_s": cpu,
            "main_loop_wall_s": wall,
            "main_max_rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
            "main_loop_minor_faults": self.loop_faults,
            "worker_cpu_s": [w[0] for w in self.node.worker_stats],
            "worker_max_rss_kb": [w[1] for w in self.node.worker_stats],
            "worker_pss_kb": [w[2] for w in self.node.worker_stats],
            "plain_results": self.outcomes.plain,
            "replay_hooks": self.outcomes.hooks.counts(),
            "teststatus_reused": self.outcomes.hooks.teststatus.reused if self.outcomes.hooks.teststatus else 0,
        }
        with open(path, "w") as f:
            json.dump(stats, f)


def _minor_faults() -> int:
    """The main's page faults so far (for PTMPROC_STATS_FILE)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
