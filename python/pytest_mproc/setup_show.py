"""`--setup-show` under `--cores`: the SETUP / TEARDOWN lines and each test's "(fixtures used:
...)" line, which pytest writes through the terminal writer while a test runs, are written in
the main at the same points of the test's replay as a serial run writes them.

Worker: the terminal writer's file is a `Capture` (instead of the worker's stderr file); what
was written during a phase is taken when that phase's report is made (pytest writes the phase's
lines before its report) and sent with the report (report_extras, key "setup_show", put where
the worker serializes reports, beside longrepr.py's). Such
reports travel in full, never in the compact form (plain_reports.usable).
Main: the text is kept with the rebuilt report (`Shown`, one per run, told by the report
decoder) and written through the main's terminal writer right before the report is replayed, so the terminal reporter's line
state is what it is serially.

A worker writes a module- or session-scoped fixture's SETUP and TEARDOWN where it set it up and
tore it down: with several workers, once per worker that used it (they each do).
"""

from __future__ import annotations

import sys

import pytest

NAME = "setup_show"


def on(config) -> bool:
    return bool(getattr(config.option, "setupshow", False))


class Capture:
    """Worker: the terminal writer's file while --setup-show is on. Collects what pytest writes
    and hands it over per report (a plugin registered as `mproc-setup-show`); everything also
    goes on to `file` (the worker's stderr file, None under -s, whose writer is the terminal), so
    what a plugin writes right before the worker dies (pytest-timeout's stack dump) is still in
    the tail the main shows for a crash."""

    def __init__(self, file) -> None:
        self.file = file
        self.parts: list[str] = []
        self.texts: dict[int, str] = {}  # id(report) -> what was written before it

    def write(self, s: str) -> int:
        self.parts.append(s)
        if self.file is not None:
            self.file.write(s)
        return len(s)

    def flush(self) -> None:
        if self.file is not None:
            self.file.flush()

    def isatty(self) -> bool:
        return False

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_logreport(self, report) -> None:
        if self.parts:
            self.texts[id(report)] = "".join(self.parts)
            self.parts.clear()

    def put(self, report, data) -> None:
        """Sends what was written before `report` with its serialized form `data`."""
        text = self.texts.pop(id(report), None)
        if text and isinstance(data, dict):
            from . import report_extras

            report_extras.put(data, NAME, text)


def worker_file(config, file):
    """The file the worker's terminal writer writes to: a registered Capture under --setup-show,
    else `file`."""
    if not on(config):
        return file
    capture = Capture(None if file is sys.stderr else file)  # -s: the main shows it, once
    config.pluginmanager.register(capture, "mproc-setup-show")
    return capture


def capture(config):
    """Worker: the registered Capture under --setup-show (after `worker_file`), else None."""
    return config.pluginmanager.get_plugin("mproc-setup-show")


class Shown:
    """Main: text to write before replaying a report, keyed by the report's identity (set when
    the report is rebuilt, written and dropped when it is replayed)."""

    def __init__(self, config) -> None:
        self.config = config
        self.texts: dict[int, str] = {}

    def keep(self, report, extras: dict) -> None:
        text = extras.get(NAME)
        if text:
            self.texts[id(report)] = text

    def before(self, report) -> None:
        text = self.texts.pop(id(report), None)
        if text:
            tw = self.config.get_terminal_writer()
            tw.write(text)
            tw.flush()


_KEY = pytest.StashKey["Shown"]()


def shown(config):
    """Main: the run's Shown under --setup-show, else None."""
    if not on(config):
        return None
    s = config.stash.get(_KEY, None)
    if s is None:
        s = config.stash[_KEY] = Shown(config)
    return s
