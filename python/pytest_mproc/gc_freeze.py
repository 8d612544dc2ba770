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
- `Freezer.settled()`: the main freezes what it replayed every `EVERY` (32) tests, before
  CPython's young-generation collection would start (700 tracked allocations; a plain passed
  test's replay keeps ~15). That collection, and the middle generation's every tenth one, only
  ever found the reports pytest keeps, and cost 3-4 µs per test in a real run (2000 trivial
  tests, packaging's suite: 33.0 -> 28.5 and 31.6 -> 28.4 µs main CPU per test, measured side
  by side): walking the young objects misses the caches while workers run beside the main.
  Whether the window of tests since the last freeze may have made cyclic garbage decides what
  happens first: a window in which every result was a plain passed test replayed straight into
  pytest's own plugins (plain_reports.py, direct_hooks.py: code that makes no cyclic garbage,
  tests/test_gc_freeze.py checks it) is frozen as it is; any other window (a failure's report,
  a hook dispatched to a third-party plugin, a live log record, a crash) has its young
  generations collected first (`gc.collect(1)`), so cyclic garbage a plugin makes is freed
  during the run as in a serial run;
- `release_previous()` (pytest_configure): frozen objects stay frozen when the session ends
  (whether pytest runs as the `pytest` command or pytest.main() is called by other code) and
  are handed back to the collector when the next session in the same process starts. The
  interpreter's shutdown does not traverse frozen objects: exit after the summary 0.1 s on
  packaging's suite, against 1.7 s never frozen and 5.5 s unfrozen at the end of the session
  (a full collection right after unfreezing did not help: CPython's shutdown collections walk
  the unfrozen objects much more slowly than never-frozen ones).

The cost: cyclic garbage that reached the oldest generation between two freezes (only when a
window of 32 tests allocates over ~7000 objects), and a finished session's collected tree and
reports when a process goes on after pytest.main() returns (one session's worth, not more: the
next session releases and collects it), live until the next session or the exit.
PTMPROC_NO_GC_FREEZE=1 turns all of this off (CPython's collector as it is).
"""

from __future__ import annotations

import gc
import os

EVERY = 32

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


def in_worker() -> None:
    """In a worker, forked after `after_collection`: the inherited tree stays frozen for the
    worker's whole life, even if a test starts a nested pytest session in this process (its
    `release_previous` would otherwise unfreeze, and collect, the main's objects here)."""
    global _frozen
    _frozen = False


class Freezer:
    """Counts replayed tests; every EVERY of them, freezes what the replay kept (collecting the
    young generations first unless the window was clean, see the module doc). `dispatches()`:
    how many replay hook calls went through pluggy so far (a third party may have run)."""

    __slots__ = ("left", "clean", "dispatches", "seen")

    def __init__(self, dispatches=lambda: 0) -> None:
        self.left = EVERY
        self.clean = True
        self.dispatches = dispatches
        self.seen = dispatches()

    def dirty(self) -> None:
        """Something other than a plain passed test's replay ran in the main: the current
        window may have made cyclic garbage."""
        self.clean = False

    def settled(self, plain: bool) -> None:
        """One more test replayed; `plain`: as a plain passed test (plain_reports.py)."""
        if not plain:
            self.clean = False
        self.left -= 1
        if not self.left:
            self.left = EVERY
            seen = self.dispatches()
            if enabled():
                if not self.clean or seen != self.seen:
                    gc.collect(1)
                _freeze()
            self.clean = True
            self.seen = seen


def release_previous() -> None:
    """A new session starts: what an earlier session in this process froze is collectable again,
    and is collected now (else this session's first freeze would keep the earlier garbage)."""
    global _frozen
    if _frozen:
        _frozen = False
        gc.unfreeze()
        gc.collect()
