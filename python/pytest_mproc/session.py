"""The plugin's hook object for a `--cores` / `--as-main` / `--as-worker` run: it takes over
pytest's run loop, hands the collected items to the controller of the run (single_host.py,
main_node.py or worker_node.py) and puts what the run returns (RunOutcome) into pytest's exit
status and terminal summary."""

from __future__ import annotations

import os

import pytest

from .history import DurationHistory
from .replay import RunOutcome


class MprocSession:
    def __init__(self, config, workers: int, multihost=None) -> None:
        """`multihost`: None for a single-host run, else ("main" | "worker", host, port, token,
        token_generated[, fleet]) (see plugin.py; `fleet`: a FleetSetup for --remote-worker)."""
        self.config = config
        self.workers = workers
        self.multihost = multihost
        self.history = DurationHistory(config)
        self.outcome = RunOutcome()
        self.fleet = None
        self.timeline = None
        if multihost is None or multihost[0] == "main":
            from .timeline import Timeline

            self.timeline = Timeline(config)
            self.timeline.install()
        self.timeline_written: str | None = None

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtestloop(self, session):
        if session.testsfailed and not session.config.option.continue_on_collection_errors:
            raise session.Interrupted(
                f"{session.testsfailed} error{'s' if session.testsfailed != 1 else ''} during collection"
            )
        if session.config.option.collectonly or not session.items:
            return True
        if getattr(session.config.option, "setuponly", False) or getattr(session.config.option, "setupplan", False):
            # --setup-only / --setup-plan run no test: pytest's own loop, in this process, prints
            # each fixture's set-up and tear-down exactly as serially (workers would print it
            # nowhere).
            return None
        if self.timeline is not None:
            self.timeline.begin()
        try:
            self.outcome = self._run(session)
        except BaseException as e:
            # A run that ends by an exception still leaves its outcome (e.g. fixture errors).
            self.outcome = getattr(e, "run_outcome", None) or self.outcome
            raise
        if session.shouldfail:
            raise session.Failed(session.shouldfail)
        if session.shouldstop:
            raise session.Interrupted(session.shouldstop)
        return True

    def _run(self, session) -> RunOutcome:
        if self.multihost is None:
            from .single_host import SingleHostRun

            return SingleHostRun(session, self.workers, self.history).execute()
        role, host, port, token, generated, *fleet = self.multihost
        if role == "main":
            from .main_node import MultiHostRun
            from .scheduling import build_entries

            if fleet:
                from .fleet import FleetRun

                self.fleet = FleetRun(fleet[0], session, token)
            return MultiHostRun(session, build_entries(session.items, self.history), host, port,
                                self.workers, token, generated, fleet=self.fleet, history=self.history).execute()
        from .worker_node import NodeError, NodeRun

        # Plugins must not take this process for the run's controller: it runs no test itself
        # and its workers' results go to the main (e.g. syrupy would call every snapshot unused).
        # To them it is an xdist worker whose output nobody collects.
        os.environ["PYTEST_XDIST_WORKER"] = "node"
        self.config.workeroutput = {}
        node = NodeRun(session, self.workers, host, port, token, self.config.getoption("mproc_connect_timeout"),
                       name=self.config.getoption("mproc_node_name"))
        try:
            outcome = node.execute()
        except NodeError as e:
            raise session.Interrupted(f"pytest-mproc worker node: {e}") from None
        tr = self.config.pluginmanager.getplugin("terminalreporter")
        if tr is not None:
            tr.write_line(f"pytest-mproc: worker node done; results are reported by the main at {host}:{port}")
        return outcome

    @pytest.hookimpl(trylast=True)
    def pytest_keyboard_interrupt(self, excinfo):
        """A test's own uncaught KeyboardInterrupt ended the run: the summary shows where the
        test raised it (as a serial run does), not where the main noticed."""
        if self.outcome.interrupt_repr is None:
            return
        tr = self.config.pluginmanager.getplugin("terminalreporter")
        if tr is not None and hasattr(tr, "_keyboardinterrupt_memo"):
            tr._keyboardinterrupt_memo = self.outcome.interrupt_repr

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionfinish(self, session):
        self.history.save()
        if self.timeline is not None:
            try:
                self.timeline_written = self.timeline.write()
            except OSError as e:
                self.outcome.node_notes.append(f"cannot write the timeline: {e}")
        if self.outcome.fixture_errors and session.exitstatus == 0:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    @pytest.hookimpl(trylast=True)
    def pytest_unconfigure(self, config):
        """Nothing module-level of ours keeps this session alive once it is over (a process
        that calls pytest.main() again must be able to free it)."""
        from . import direct_hooks

        for call in self.outcome.at_end:
            call()
        self.outcome.at_end.clear()
        direct_hooks.restore(config.pluginmanager)
        if self.timeline is not None:
            self.timeline.uninstall()

    def pytest_terminal_summary(self, terminalreporter):
        if self.timeline is not None:
            lines = self.timeline.terminal_lines(verbose=self.config.get_verbosity() > 0)
            if lines:
                terminalreporter.write_sep("-", "pytest-mproc workers")
                for line in lines:
                    terminalreporter.write_line(line)
        if self.timeline_written:
            terminalreporter.write_line(f"pytest-mproc: timeline written to {self.timeline_written}")
        for text in self.outcome.fixture_errors:
            terminalreporter.write_sep("=", "pytest-mproc fixture teardown error", red=True)
            terminalreporter.write_line(text.rstrip())
        if self.outcome.cut_off:
            terminalreporter.write_line(
                f"pytest-mproc: interrupted while running (no result): {', '.join(self.outcome.cut_off)}", yellow=True)
        if self.fleet is not None:
            terminalreporter.write_sep("-", "pytest-mproc hosts")
            for line in self.fleet.summary():
                terminalreporter.write_line(line)
        for note in self.outcome.node_notes:
            terminalreporter.write_line(f"pytest-mproc: {note}", yellow=True)
        if self.outcome.not_run:
            terminalreporter.write_line(
                f"pytest-mproc: {self.outcome.not_run} test{'s' if self.outcome.not_run != 1 else ''} not run "
                f"(the run was stopped early)", yellow=True
            )
