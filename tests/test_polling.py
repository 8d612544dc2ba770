"""polling.py: how long the single-host main naps mid-run (the rule, with a fake clock)."""

from __future__ import annotations

import pytest

from pytest_mproc import polling
from pytest_mproc.polling import Pace


@pytest.fixture
def clock(monkeypatch):
    now = [100.0]
    monkeypatch.setattr(polling.time, "monotonic", lambda: now[0])
    return now


def _steady(pace: Pace, clock, rate: float, remaining: int, naps: int = 4) -> float:
    """Naps `naps` times with results arriving at `rate` per second; the last nap's length."""
    nap = pace.nap(remaining)
    for _ in range(naps):
        clock[0] += nap
        remaining -= int(rate * nap)
        nap = pace.nap(remaining)
    return nap


def test_short_naps_until_results_come(clock):
    pace = Pace(512)
    assert pace.nap(1000) == polling.MIN
    clock[0] += 0.5
    assert pace.nap(1000) == polling.MIN  # nothing came: no rate to go by


def test_longer_naps_while_results_trickle_in(clock):
    # 2000 results/s: a 40 ms nap leaves 80 in the ring (of 512), and 50 000 tests are 25 s of work.
    assert _steady(Pace(512), clock, 2000, 50_000) == polling.MAX


def test_the_ring_never_fills_during_a_nap(clock):
    # 8000 results/s: a quarter of the ring (128 cells) comes in 16 ms.
    nap = _steady(Pace(512), clock, 8000, 50_000)
    assert nap == pytest.approx(128 / 8000, rel=0.05)
    assert nap * 8000 <= 512 / 4 * 1.05


def test_the_end_of_the_run_is_not_napped_through(clock):
    # 400 results/s, 40 tests left (0.1 s of work): at most an eighth of that.
    nap = _steady(Pace(512), clock, 400, 60, naps=1)
    assert polling.MIN <= nap <= 0.1 / 8 * 1.5
    assert _steady(Pace(512), clock, 400, 5, naps=1) == polling.MIN
