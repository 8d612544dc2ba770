"""Keeping CPython's garbage collector off the objects a run keeps anyway.

A full (generation 2) collection traverses every tracked object. In a run's main process that
is the collected tree (items, their fixtures' definitions, marks) and every report replayed so
far, which pytest keeps to the end for its summary: on packaging's suite (64 207 tests) eight
full collections during the run cost 1.8 s, ~29 µs per test, growing with the suite (CPython
starts a full collection each time the long-lived objects grew by a quarter). Such objects
live until the session ends, so looking at them again finds nothing to free.

`gc.freeze()` moves every tracked object to the permanent generation, which collections skip
(a constant-time list splice). So:
- `after_collection()`: the node freezes what collection made, before the fork server forks
  (its workers inherit it: their collections then skip, and do not write to, the inherited
  objects' pages either);
- `Freezer.settled()`: the main freezes again every `EVERY` replayed tests, so only the reports
  of the last few hundred tests are ever traversed;
- `release()` (pytest_unconfigure): when pytest.main() was called by other code (pytester,
  an IDE, a script), everything goes back to the oldest generation, so a process that runs
  pytest again frees what it no longer uses. When pytest runs as the `pytest` command
  (`pytest.console_main`) the process ends with the session: objects stay frozen, and the
  interpreter's shutdown does not traverse them (packaging's suite: exit after the summary
  0.1 s, against 1.7 s never frozen and 5.5 s unfrozen).

The cost: cyclic garbage made between two freezes (at most a young generation's worth, ~700
objects) lives until `release()`. PTMPROC_NO_GC_FREEZE=1 turns all of this off.
"""

from __future__ import annotations

import gc
import os
import sys

EVERY = 1024

_frozen = False


def enabled() -> bool:
    return os.environ.get("PTMPROC_NO_GC_FREEZE", "") in ("", "0")


def _freeze() -> None:
    global _frozen
    if enabled():
        gc.freeze()
        _frozen = True


def after_collection() -> None:
    """The node's collected objects are there for the whole run: out of the collector's way."""
    _freeze()


class Freezer:
    """Counts replayed tests; every EVERY of them, freezes what the replay kept."""

    __slots__ = ("left",)

    def __init__(self) -> None:
        self.left = EVERY

    def settled(self) -> None:
        self.left -= 1
        if not self.left:
            self.left = EVERY
            _freeze()


def release() -> None:
    """The session is over: frozen objects are collectable again (only if we froze any),
    unless the process ends with it."""
    global _frozen
    if _frozen and not _process_ends_with_session():
        _frozen = False
        gc.unfreeze()


def _process_ends_with_session() -> bool:
    """True when pytest's command-line entry point runs this session: it exits afterwards."""
    import _pytest.config

    # pytest 9 runs the command through _console_main, pytest 8 in console_main itself.
    entry = {f.__code__ for f in (getattr(_pytest.config, name, None) for name in ("console_main", "_console_main"))
             if f is not None}
    frame = sys._getframe()
    while frame is not None:
        if frame.f_code in entry:
            return True
        frame = frame.f_back
    return False
