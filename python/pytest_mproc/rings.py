"""The shared-memory rings of one node (single host, or a worker node of a multi-host run)."""

from __future__ import annotations

from collections import deque

from . import _core


def lease_entries(workers: int) -> int:
    """Lease entries per ring: every worker attaches one, replacements included."""
    return max(64, 4 * workers)


def node_rings(units: int, workers: int) -> tuple[_core.Ring, _core.Ring]:
    """(tasks, results). Tasks hold every queued unit at once (up to 65536 cells); results: a
    passing test's reports (~1.5 KB pickled) travel inline, big tracebacks through the blob
    arena (memfd pages cost memory only once written)."""
    leases = lease_entries(workers)
    cap = 1 << max(1, min(units, 1 << 16) - 1).bit_length()
    tasks = _core.Ring.create(capacity=cap, slot_size=64, leases=leases, arena_bytes=4 << 20)
    results = _core.Ring.create(capacity=512, slot_size=2048, leases=leases, arena_bytes=256 << 20)
    return tasks, results


class BatchReader:
    """The main's reading side of a results ring: `try_pop`/`pop` as the ring's, but items come
    off the ring a batch at a time (`Ring.try_pop_batch`: one wake-up for the workers blocked on
    a full ring per batch, not one per result). Items taken off the ring and not handled yet
    wait here, so an exception in the middle of a batch loses none: whoever replays what had
    arrived (replay.replay_arrived) reads through this reader too."""

    def __init__(self, ring: _core.Ring, batch: int = 64) -> None:
        self.ring = ring
        self.batch = batch
        self.backlog: deque = deque()

    def _fill(self) -> bool:
        """Takes a batch off the ring if nothing waits here; True if something waits now."""
        if not self.backlog:
            self.backlog.extend(self.ring.try_pop_batch(self.batch))
        return bool(self.backlog)

    def try_pop(self):
        """The next item, or None if there is none now (RingClosed: closed and drained)."""
        return self.backlog.popleft() if self._fill() else None

    def wait(self, timeout: float) -> bool:
        """Sleeps on the ring's futex until an item is there (it then waits in the backlog for
        `try_pop`), at most `timeout` seconds; False if none came. A worker pays a wake-up
        system call for a result only while the reader sleeps here (wakeup.rs): a reader busy
        replaying costs its writers nothing, an idle one gets each result at once."""
        if self._fill():
            return True
        item = self.ring.pop(timeout=timeout)
        if item is None:
            return False
        self.backlog.append(item)
        return True

    def pop(self, timeout: float):
        """The next item, waiting up to `timeout` seconds for one (None after)."""
        return self.try_pop() if self.wait(timeout) else None
