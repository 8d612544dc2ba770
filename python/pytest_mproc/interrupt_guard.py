"""Ctrl-C in the main without losing a result.

A result popped from the results ring exists nowhere else: a KeyboardInterrupt raised between
the pop and the end of its replay would drop it from the partial summary. While the guard is
installed, Ctrl-C raises KeyboardInterrupt where it arrives as usual, except inside
`handling()`, where it is raised as soon as the message at hand has been handled."""

from __future__ import annotations

import signal


class InterruptGuard:
    def __init__(self) -> None:
        self.busy = False
        self.pending = False
        self._old = None

    def install(self) -> None:
        """Only over Python's own SIGINT handler (a handler the user installed stays)."""
        try:
            if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
                self._old = signal.signal(signal.SIGINT, self._on_sigint)
        except ValueError:  # not the main thread
            self._old = None

    def uninstall(self) -> None:
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)
            self._old = None

    def _on_sigint(self, signum, frame) -> None:
        if self.busy:
            self.pending = True
        else:
            raise KeyboardInterrupt

    def handling(self) -> "InterruptGuard":
        """`with guard.handling():` around the handling of one message (a plain class, not a
        generator context manager: it is entered once per result)."""
        return self

    def __enter__(self) -> None:
        self.busy = True

    def __exit__(self, *exc) -> None:
        self.busy = False
        if self.pending:
            self.pending = False
            raise KeyboardInterrupt
