"""How long the single-host main naps between looks at the results ring mid-run.

Mid-run the main does not sleep on the ring's futex: waking for each result would cost a
worker a wake-up system call per result and the main a context switch per test. It naps and
replays what came meanwhile as a batch. Each wake-up costs the main 60-100 µs of CPU on a
2-vCPU machine whatever it then finds (the wake itself, caches a worker's run left cold), so
the nap is as long as is safe:
- MIN (10 ms) until results have come at a known rate;
- at most MAX (40 ms), and short enough that the results ring stays at most a quarter full at
  the rate results came lately (a worker must not block on a full ring);
- at most an eighth of the time the remaining tests should take at that rate, so the run's
  last results (from `remaining <= workers` on the main takes each as it arrives) are not
  noticed late.
A main that is busy replaying (a big box) does not nap at all: this is about the CPU an idle
main takes from the workers beside it.
"""

from __future__ import annotations

import time

MIN = 0.01
MAX = 0.04


class Pace:
    __slots__ = ("fill", "rate", "since", "remaining")

    def __init__(self, ring_cells: int) -> None:
        self.fill = max(1, ring_cells // 4)
        self.rate = 0.0  # results per second, lately
        self.since = 0.0
        self.remaining = -1

    def nap(self, remaining: int) -> float:
        """How long to nap now, with `remaining` tests still without a result."""
        now = time.monotonic()
        if self.remaining >= 0 and now > self.since:
            sample = (self.remaining - remaining) / (now - self.since)
            self.rate = sample if not self.rate else (self.rate + sample) / 2
        self.since, self.remaining = now, remaining
        if self.rate <= 0:
            return MIN
        return max(MIN, min(MAX, self.fill / self.rate, remaining / self.rate / 8))
