"""The live status on a terminal: while a test has been running for a second or more, the end
of the current terminal line shows what every worker is running and for how long
(`gw0 tests/test_api.py::test_upload 12s | gw1 ...`), redrawn twice a second and erased before
anything else is written. Only on a terminal (not when stdout is a file or a pipe) and not with
`-qq`; it is written around pytest's terminal writer, so nothing a plugin or a file sees
changes."""

from __future__ import annotations

import time

REDRAW_EVERY = 0.5
# A test shows up once it has been running this long (fast tests would only flicker).
SHOW_AFTER = 1.0
DIM, RESET = "\x1b[2m", "\x1b[0m"


class _File:
    """pytest's terminal file, erasing the status before anything is written."""

    def __init__(self, file, status: "StatusLine") -> None:
        self._wrapped = file
        self._status = status

    def write(self, text: str) -> int:
        self._status.erase()
        return self._wrapped.write(text)

    def __getattr__(self, name: str):
        return getattr(self._wrapped, name)


class StatusLine:
    def __init__(self, config, running) -> None:
        """`running()`: [(worker, node id, seconds running)]."""
        self.running = running
        self.shown = 0
        self.next_draw = 0.0
        tr = config.pluginmanager.getplugin("terminalreporter")
        self.tw = getattr(tr, "_tw", None)
        self.enabled = (tr is not None and self.tw is not None and getattr(tr, "isatty", False)
                        and config.get_verbosity() > -2 and hasattr(self.tw, "_file"))
        if self.enabled:
            self.file = self.tw._file
            self.tw._file = _File(self.file, self)

    def tick(self) -> None:
        if not self.enabled or time.monotonic() < self.next_draw:
            return
        self.next_draw = time.monotonic() + REDRAW_EVERY
        busy = sorted((r for r in self.running() if r[2] >= SHOW_AFTER), key=lambda r: -r[2])
        self.erase()
        if not busy:
            return
        room = self.tw.fullwidth - self.tw.width_of_current_line - 4
        if room < 20:
            return
        text = " | ".join(f"{wid} {nodeid} {secs:.0f}s" for wid, nodeid, secs in busy)
        if len(text) > room:
            text = text[: room - 3] + "..."
        self.file.write(f"  {DIM}{text}{RESET}")
        self.file.flush()
        self.shown = len(text) + 2

    def erase(self) -> None:
        if self.shown:
            self.file.write(f"\x1b[{self.shown}D\x1b[K")
            self.shown = 0

    def close(self) -> None:
        if self.enabled:
            self.erase()
            self.file.flush()
            self.tw._file = self.file
            self.enabled = False
