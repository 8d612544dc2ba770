"""Replays what workers report into the main process's own pytest hooks, so the terminal,
--junitxml, the --lf cache and any reporting plugin see exactly what a serial run shows."""

from __future__ import annotations

import importlib
import os
import pickle
import signal
import time
import warnings
from dataclasses import dataclass, field

from _pytest.outcomes import Exit
from _pytest.reports import TestReport

from . import gc_freeze, plain_reports, setup_show
from .direct_hooks import ReplayHooks
from .messages import PASSED


# pytest's own implementations of the report (de)serializing hooks: `reports` handles plain
# TestReports, `subtests` (pytest >= 9) only its SubtestReport type.
_PYTEST_REPORT_IMPLS = {"_pytest.reports", "_pytest.subtests"}


def only_pytest_implements(hook) -> bool:
    """True when only pytest itself implements a report (de)serializing hook: then a plain
    TestReport can be converted directly, skipping a plugin dispatch per report, with the
    same result."""
    return all(getattr(i.plugin, "__name__", "") in _PYTEST_REPORT_IMPLS for i in hook.get_hookimpls())


def report_decoder(config):
    """data -> report, as pytest_report_from_serializable rebuilds it, minus what the trip
    added: pytest's own deserialization leaves the "$report_type" marker as an attribute of the
    rebuilt report (a serial run's reports have no such attribute), and what the worker sent
    beside the report (report_extras.py) is applied: longrepr.py's object goes back in place of
    its text, --setup-show's lines are kept for the replay (setup_show.py), plugin_state.py's
    glue sees every report."""
    from . import longrepr, report_extras
    from .plugin_state import after_decode

    hook = config.hook.pytest_report_from_serializable
    shown = setup_show.shown(config)

    def apply(report, data, extras):
        longrepr.restore(report, extras)
        if shown is not None:
            shown.keep(report, extras)
        after_decode(config, report, data, extras)

    def decode_any(data):
        extras = report_extras.take(data)
        report = hook(config=config, data=data)
        getattr(report, "__dict__", {}).pop("$report_type", None)
        apply(report, data, extras)
        return report

    if only_pytest_implements(hook):
        def decode(data):
            if data.get("$report_type") == "TestReport":
                del data["$report_type"]
                extras = report_extras.take(data)
                report = TestReport._from_json(data)
                if extras:
                    apply(report, data, extras)
                return report
            return decode_any(data)
        return decode
    return decode_any


def _log_test(hooks: ReplayHooks, item, nodeid: str, reports, warning_tuples=(), finished: bool = True,
              plain: bool = False, shown=None) -> None:
    """Fires the hooks a serial run fires for one test: logstart, each report, warnings, logfinish
    (not for a test a KeyboardInterrupt cut short: a serial run does not finish it either).

    `plain`: the reports are a plain passed test's (plain_reports.py). If only pytest's and our
    implementations take part (ReplayHooks.plain_calls), the hooks are called straight and the
    terminal reporter gets, for each phase, the status pytest's own pytest_report_teststatus
    gave the first plain report of that phase (they read only the phase and the outcome).
    `shown`: the run's setup_show.Shown under --setup-show (its lines go before each report)."""
    location = item.location
    direct = hooks.plain_calls(item) if plain else None
    if direct is not None:
        start, report, finish = direct
        status = hooks.teststatus
        status.known = reports
        try:
            start(nodeid, location)
            for rep in reports:
                report(rep)
            finish(nodeid, location)
        finally:
            status.known = None
        return
    logstart, logreport, logfinish = hooks.of(item)
    logstart(nodeid, location)
    for rep in reports:
        if shown is not None:
            shown.before(rep)
        logreport(rep)
    for w in warning_tuples:
        _replay_warning(item.config, w)
    if finished:
        logfinish(nodeid, location)


@dataclass
class RunOutcome:
    """What a run (single host, multi-host main, worker node) leaves for the summary."""

    not_run: int = 0
    crashed: list = field(default_factory=list)
    fixture_errors: list = field(default_factory=list)
    node_notes: list = field(default_factory=list)
    # A test's uncaught KeyboardInterrupt, as pytest's terminal reporter shows it.
    interrupt_repr: object = None
    # Tests that were running when the run was interrupted (cut off, no result).
    cut_off: list = field(default_factory=list)
    # Called once the session is over (after the summary): reaping processes still exiting.
    at_end: list = field(default_factory=list)


class Outcomes:
    """Which collected tests have a result yet; each test's result (or crash) is replayed into
    pytest's hooks exactly once, however often it arrives."""

    def __init__(self, session, outcome: RunOutcome, rerun=None, history=None) -> None:
        """`rerun(index)`: queues a crashed test again (when a plugin asks for it through
        xdist's pytest_handlecrashitem); `history`: the run's DurationHistory, told each test's
        duration as it is replayed."""
        self.config = session.config
        self.history = history if history is not None and history.enabled else None
        self.shown = setup_show.shown(self.config)
        self.rerun = rerun
        self.items = session.items
        self.done = bytearray(len(self.items))
        self.remaining = len(self.items)
        self.crashed = outcome.crashed
        self.decode = report_decoder(self.config)
        self.hooks = ReplayHooks(self.config)
        self.plain = 0  # results that came in the compact form (statistics)
        self.freezer = gc_freeze.Freezer(self.hooks.dispatches)
        from . import timeline

        self.timeline = timeline.current()

    def _log(self, item, reports, warning_tuples=(), finished: bool = True, plain: bool = False) -> str:
        """Replays one test's reports (_log_test) and adds them to the duration history; the
        test's node id."""
        nodeid = item.nodeid  # (pytest 9 renders it from a NodeId on each access)
        _log_test(self.hooks, item, nodeid, reports, warning_tuples, finished, plain, self.shown)
        if self.history is not None:
            self.history.record(nodeid, reports)
        return nodeid

    def _settle(self, index: int) -> bool:
        """Marks test `index` as having its result; False if it already had one."""
        if self.done[index]:
            return False
        self.done[index] = 1
        self.remaining -= 1
        return True

    def interrupted(self, msg: tuple, outcome: RunOutcome, raise_it: bool = True) -> None:
        """A test raised KeyboardInterrupt that it did not catch, or called pytest.exit()
        (messages.INTERRUPTED, with (reason, returncode) last for pytest.exit): its reports so
        far are replayed and, as in a serial run, the whole run is interrupted (the session ends
        with the same Exit)."""
        _, _wid, index, report_dicts, repr_bytes, *rest = msg
        exit_info = rest[0] if rest else None
        if self._settle(index):
            item = self.items[index]
            self._log(item, [self.decode(d) for d in report_dicts], finished=False)
        if exit_info is not None:
            outcome.interrupt_repr = None  # the main's own Exit shows as serially
            if raise_it:
                raise Exit(exit_info[0], exit_info[1])
            return
        try:
            outcome.interrupt_repr = pickle.loads(repr_bytes)
        except Exception:  # an unpicklable repr: pytest shows the main's own interrupt instead
            outcome.interrupt_repr = None
        if raise_it:
            raise KeyboardInterrupt

    def result(self, msg: tuple) -> bool:
        """Replays a test's reports (a messages.RESULT: kind, worker, index, reports, warnings,
        location[, node]; or a messages.PASSED: kind, worker, index, location, keywords, times
        [, node]); False if the test already had a result."""
        plain = msg[0] == PASSED
        if plain:
            _, wid, index, location, keywords, times, *rest = msg
        else:
            _, wid, index, report_dicts, warning_tuples, location, *rest = msg
        if not self._settle(index):
            return False
        item = self.items[index]
        if "location" not in item.__dict__:
            # The worker computed it already (it is a cached property, costly to recompute).
            item.__dict__["location"] = location
        if plain:
            self.plain += 1
            reports = plain_reports.build(item, location, keywords, times)
            warning_tuples = ()
        else:
            reports = [self.decode(data) for data in report_dicts]
        nodeid = self._log(item, reports, warning_tuples, plain=plain)
        if self.timeline is not None:
            node = rest[0] if rest else ""
            if plain:
                self.timeline.passed(nodeid, node, wid, times)
            else:
                self.timeline.test(nodeid, node, wid, reports)
        self.freezer.settled(plain)
        return True

    def crash(self, index: int, who: str, pid: int, status: int, tail: str, reason: str | None = None) -> bool:
        """Reports a test as crashed (see crash_reports); False if it already had a result, or if
        a plugin had it queued again (xdist's pytest_handlecrashitem)."""
        if self.done[index]:
            return False
        self.freezer.dirty()
        item = self.items[index]
        reports = crash_reports(item, who, pid, status, tail, None, reason=reason)
        pending = []
        from . import xdist_protocol

        xdist_protocol.handle_crash(self.config, item.nodeid, reports[1], pending.append)
        if pending and self.rerun is not None:
            self._log(item, reports)  # the plugin marked the report (e.g. "rerun")
            self.rerun(index)
            return False
        self._settle(index)
        self.crashed.append(item.nodeid)
        self._log(item, reports)
        if self.timeline is not None:
            self.timeline.crash(item.nodeid, who)
        return True

    def missing(self) -> list[str]:
        """Node ids of the tests without a result, in collection order."""
        return [item.nodeid for item, done in zip(self.items, self.done) if not done]


def _replay_warning(config, w: tuple) -> None:
    message, cat_module, cat_name, filename, lineno, when, nodeid, location = w
    category = UserWarning
    try:
        category = getattr(importlib.import_module(cat_module), cat_name)
    except Exception:
        pass
    if isinstance(message, str):
        message = category(message)
    wm = warnings.WarningMessage(message, category, filename, lineno)
    config.hook.pytest_warning_recorded.call_historic(
        kwargs=dict(warning_message=wm, when=when, nodeid=nodeid, location=location)
    )


def describe_status(status: int) -> str:
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = f"signal {sig}"
        return f"killed by {name} (signal {sig})"
    return f"exited with code {os.waitstatus_to_exitcode(status)}"


def stderr_tail(path: str, max_bytes: int = 8192) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - max_bytes))
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""


def print_report(config, title: str, text: str) -> None:
    """A report in the middle of the run's output (hang reports), on its own lines."""
    import sys

    tr = config.pluginmanager.getplugin("terminalreporter")
    if tr is None:
        sys.stderr.write(f"{title}\n{text}\n")
        return
    tr.ensure_newline()
    tr.write_sep("-", title, yellow=True)
    tr.write_line(text)


def crash_reports(item, wid: str, pid: int, status: int, tail: str, started: float | None,
                  reason: str | None = None) -> list:
    """The reports (setup, call, teardown) of `item` failed because its worker died while
    running it (or, with `reason`, because its whole node was lost)."""
    now = time.time()
    duration = max(0.0, now - started) if started else 0.0
    if reason is not None:
        text = f"{reason}; this test was running there and is not run again"
    else:
        text = f"worker {wid} (pid {pid}) crashed while running this test: {describe_status(status)}"
    if tail.strip():
        text += f"\n\n--- last output of worker {wid} on stderr ---\n{tail.rstrip()}"
    keywords = {k: 1 for k in item.keywords}
    common = dict(nodeid=item.nodeid, location=item.location, keywords=keywords, user_properties=[])
    reports = [
        TestReport(outcome="passed", longrepr=None, when="setup", duration=0.0, start=now, stop=now, **common),
        TestReport(outcome="failed", longrepr=text, when="call", duration=duration, start=now - duration,
                   stop=now, **common),
        TestReport(outcome="passed", longrepr=None, when="teardown", duration=0.0, start=now, stop=now, **common),
    ]
    return reports


def run_ended_by(e: BaseException, results, outcomes: Outcomes, outcome: RunOutcome) -> None:
    """A run is ending by exception `e` (its workers already stopped): after Ctrl-C the results
    that had arrived are replayed; the outcome travels with the exception for the summary
    (session.py)."""
    if isinstance(e, (KeyboardInterrupt, Exit)):
        replay_arrived(results, outcomes, outcome)
    e.run_outcome = outcome


def replay_arrived(results, outcomes: Outcomes, outcome: RunOutcome) -> None:
    """After an interrupt (workers are gone): replays the results that had already arrived, so
    the partial summary counts every test that finished. Coordinator events are skipped."""
    from . import messages
    from .verbose import log

    try:
        while (data := results.try_pop()) is not None:
            if messages.is_event(data):
                continue
            msg = messages.decode(data)
            if msg[0] in messages.RESULTS:
                outcomes.result(msg)
            elif msg[0] == messages.INTERRUPTED and outcome.interrupt_repr is None:
                outcomes.interrupted(msg, outcome, raise_it=False)
    except Exception as e:  # the interrupt matters more than a half-written result
        log(f"could not replay the last results: {e!r}")
