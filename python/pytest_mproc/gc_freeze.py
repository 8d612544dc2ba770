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
- `release_previous()` (pytest_configure): frozen objects stay frozen when the session ends
  (whether pytest runs as the `pytest` command or pytest.main() is called by other code) and
  are handed back to the collector when the next session in the same process starts. The
  interpreter's shutdown does not traverse frozen objects: exit after the summary 0.1 s on
  packaging's suite, against 1.7 s never frozen and 5.5 s unfrozen at the end of the session
  (a full collection right after unfreezing did not help: CPython's shutdown collections walk
  the unfrozen objects much more slowly than never-frozen ones).

The cost: cyclic garbage made between two freezes (at most a young generation's worth, ~700
objects) lives until the next session or the exit, and so does a finished session's collected
tree and reports when a process goes on after pytest.main() returns (one session's worth, not
more: the next session releases and collects it). PTMPROC_NO_GC_FREEZE=1 turns all of this off.
"""

from __future__ import annotations

import gc
import os

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


def in_worker() -> None:
    """In a worker, forked after `after_collection`: the inherited tree stays frozen for the
    worker's whole life, even if a test starts a nested pytest session in this process (its
    `release_previous` would otherwise unfreeze, and collect, the main's objects here)."""
    global _frozen
    _frozen = False


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


def release_previous() -> None:
    """A new session starts: what an earlier session in this process froze is collectable again,
    and is collected now (else this session's first freeze would keep the earlier garbage)."""
    global _frozen
    if _frozen:
        _frozen = False
        gc.unfreeze()
        gc.collect()
