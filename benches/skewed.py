#!/usr/bin/env python3
"""Scheduling benchmark: 8 tests of 1 s placed LAST in collection order plus 400 tests of 5 ms,
at --cores 2. Times, interleaved over rounds: pytest-mproc's first run (no history), its second
run (durations recorded by the first), and pytest-xdist -n 2. The optimal makespan is
max(total work / 2, longest unit).

    python3 benches/skewed.py --rounds 3
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SUITE = """
import time, pytest

@pytest.mark.parametrize("n", range(400))
def test_short(n):
    time.sleep(0.005)

@pytest.mark.parametrize("n", range(8))
def test_long(n):
    time.sleep(1.0)
"""


def timed(cwd: Path, *args: str) -> float:
    t = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", *args], cwd=cwd,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if r.returncode != 0:
        sys.exit(r.stdout.decode()[-2000:])
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    opts = ap.parse_args()
    res = {"mproc first run": [], "mproc second run": [], "xdist -n 2": []}
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        (d / "test_skewed.py").write_text(SUITE)
        timed(d, "-p", "no:cacheprovider", "--co")  # warm caches
        for _ in range(opts.rounds):
            shutil.rmtree(d / ".pytest_cache", ignore_errors=True)
            res["mproc first run"].append(timed(d, "--cores", "2"))
            res["mproc second run"].append(timed(d, "--cores", "2"))
            res["xdist -n 2"].append(timed(d, "-p", "no:cacheprovider", "-n", "2"))
    work = 400 * 0.005 + 8 * 1.0
    optimal = max(work / 2, 1.0)
    print(f"skewed suite (8 x 1 s last + 400 x 5 ms), --cores/-n 2, {opts.rounds} rounds; "
          f"optimal makespan {optimal:.2f} s of test time (plus start-up)")
    for k, v in res.items():
        m = statistics.median(v)
        print(f"{k:<18} median {m:6.2f} s  ({m / optimal:.2f}x optimal)")


if __name__ == "__main__":
    main()
