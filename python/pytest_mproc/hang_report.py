"""Hang reports: which worker runs which test, for how long, and that worker's Python stack (all
threads, faulthandler-style), without stopping the test.

Made once per test that has been running `--mproc-hang-report` seconds, for every running test
when the main gets SIGQUIT (Ctrl-\\), and for every running test when the run is interrupted
(Ctrl-C; the summary then names the tests that were cut off). On a worker node the node's
process makes the report and sends it to the main, which prints it.

A worker's stack is dumped by faulthandler on DUMP_SIGNAL (a real-time signal tests are
unlikely to use; Python's own view of its disposition stays SIG_DFL) into the worker's stderr
file, from which it is read back.
"""

from __future__ import annotations

import os
import signal
import time

from . import _core

DUMP_SIGNAL = signal.SIGRTMIN + 3
# How long to wait for a worker's dump to appear, and for it to be complete.
_DUMP_WAIT = 2.0
_DUMP_SETTLE = 0.02
# How often running tests are looked at.
_CHECK_EVERY = 0.25


class HangWatch:
    def __init__(self, node, after: float, emit) -> None:
        """`node`: the Supervisor whose workers are watched; `after`: seconds (0: never on
        time); `emit(text)`: prints or forwards a report."""
        self.node = node
        self.after_ns = int(after * 1e9)
        self.emit = emit
        self.reported: set[tuple[int, int, int]] = set()
        self.next_check = 0.0

    def _wid(self, pid: int) -> str:
        return next((wid for wid, p in self.node.live.items() if p == pid), f"pid {pid}")

    def running(self) -> list[tuple[str, int, int, float]]:
        """(worker id, pid, test index, seconds running) for each running test."""
        now = _core.monotonic_ns()
        return [(self._wid(pid), pid, key, (now - started) / 1e9)
                for _slot, pid, key, started in self.node.tasks.leases() if key is not None]

    def check(self) -> None:
        """Reports tests that crossed the limit (cheap when called often)."""
        if not self.after_ns or time.monotonic() < self.next_check:
            return
        self.next_check = time.monotonic() + _CHECK_EVERY
        now = _core.monotonic_ns()
        for _slot, pid, key, started in self.node.tasks.leases():
            if key is None or now - started < self.after_ns or (pid, key, started) in self.reported:
                continue
            self.reported.add((pid, key, started))
            self.emit(self.report(self._wid(pid), pid, key, (now - started) / 1e9))

    def report_all(self, why: str) -> list[str]:
        """Reports every running test (SIGQUIT, Ctrl-C); returns their node ids."""
        running = self.running()
        for wid, pid, key, secs in running:
            self.emit(self.report(wid, pid, key, secs, why))
        return [self.node.items[key].nodeid for _wid, _pid, key, _secs in running]

    def report(self, wid: str, pid: int, key: int, secs: float, why: str = "") -> str:
        where = f" on node {self.node.name}" if self.node.name else ""
        head = (f"{self.node.items[key].nodeid} has been running for {secs:.1f} s on worker {wid} "
                f"(pid {pid}){where}{f' ({why})' if why else ''}")
        return f"{head}\n{self.stack(wid, pid)}"

    def stack(self, wid: str, pid: int) -> str:
        if self.node.config.getoption("capture", "fd") == "no":
            try:
                os.kill(pid, DUMP_SIGNAL)
            except ProcessLookupError:
                return "(the worker has ended)"
            return "(its stack is printed on the terminal by the worker, above)"
        path = os.path.join(self.node.rundir, f"{wid}.stderr")
        try:
            before = os.path.getsize(path)
        except OSError:
            before = 0
        try:
            os.kill(pid, DUMP_SIGNAL)
        except ProcessLookupError:
            return "(the worker has ended)"
        deadline = time.monotonic() + _DUMP_WAIT
        size = before
        while time.monotonic() < deadline:
            time.sleep(_DUMP_SETTLE)  # polling the file the worker's signal handler writes, bounded
            now = os.path.getsize(path) if os.path.exists(path) else before
            if now > before and now == size:
                break
            size = now
        try:
            with open(path, "rb") as f:
                f.seek(before)
                return f.read().decode("utf-8", "replace").rstrip() or "(no stack arrived)"
        except OSError:
            return "(no stack arrived)"


class SigquitFlag:
    """While installed in the main, SIGQUIT (Ctrl-\\) asks for a report of every running test
    instead of ending the process; uninstall restores what was there."""

    def __init__(self) -> None:
        self.raised = False
        self._old = None

    def install(self) -> None:
        try:
            self._old = signal.signal(signal.SIGQUIT, self._on)
        except ValueError:  # not the main thread
            self._old = None

    def _on(self, signum, frame) -> None:
        self.raised = True

    def take(self) -> bool:
        raised, self.raised = self.raised, False
        return raised

    def uninstall(self) -> None:
        if self._old is not None:
            signal.signal(signal.SIGQUIT, self._old)
            self._old = None
