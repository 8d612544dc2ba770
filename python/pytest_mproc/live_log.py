"""Live logging (`log_cli`) from workers: with `log_cli` on, every record a test logs at or
above `log_cli_level` reaches the main's terminal while the test runs, formatted with the
run's `log_cli_format` / `log_cli_date_format` and prefixed with the worker that logged it
(`[gw1]`, `[node/gw1]` for other hosts: the records travel with the results, so over the
bridge too).

Worker side: pytest's logging plugin keeps feeding its live handler (its level, its
formatter); in a worker that handler is replaced by one that sends each formatted record to
the main instead of writing to the worker's (silent) terminal."""

from __future__ import annotations

import logging

from . import messages

LOG = "L"  # messages kind: ("L", wid, node, levelno, text)


class _Forwarder(logging.Handler):
    """Stands in for pytest's _LiveLoggingStreamHandler in a worker (same interface)."""

    def __init__(self, results, wid: str, node: str, original: logging.Handler) -> None:
        super().__init__(level=original.level)
        self.setFormatter(original.formatter)
        self.results = results
        self.wid = wid
        self.node = node

    def reset(self) -> None:  # called by pytest's logging plugin at each test's start
        pass

    def set_when(self, when: str | None) -> None:  # called at each phase
        pass

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = self.format(record)
            self.results.push(messages.encode((LOG, self.wid, self.node, record.levelno, text)), timeout=5)
        except Exception:  # noqa: BLE001 - logging must never break a test
            self.handleError(record)


def install_in_worker(config, results, wid: str, node: str) -> None:
    plugin = config.pluginmanager.get_plugin("logging-plugin")
    if plugin is None or not plugin._log_cli_enabled():
        return
    original = plugin.log_cli_handler
    forwarder = _Forwarder(results, wid, node, original)
    plugin.log_cli_handler = forwarder
    # The plugin attached its handler to the root logger for the whole run loop (the worker was
    # forked inside it): the forwarder takes its place there.
    root = logging.getLogger()
    if original in root.handlers:
        root.removeHandler(original)
        root.addHandler(forwarder)


def show(config, msg: tuple) -> None:
    """On the main: a worker's record, on the terminal as a serial run's live log shows it."""
    _, wid, node, _level, text = msg
    tr = config.pluginmanager.getplugin("terminalreporter")
    if tr is None:
        return
    label = f"{node}/{wid}" if node else wid
    for line in text.splitlines() or [""]:
        tr.write_line(f"[{label}] {line}")
