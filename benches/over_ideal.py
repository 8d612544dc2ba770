#!/usr/bin/env python3
"""How far a `--cores` run is from its ideal: plain pytest's start-up with one test, plus the
suite's work divided by the workers (40 tests sleeping 50 ms on 2 workers: start-up + 1.0 s).

Each `--cores` run is paired with plain one-test runs right before and after it, and the ratio
is taken per pair: on a shared VM the start-up alone swings by tens of milliseconds from one
minute to the next, more than the gap being measured, so medians of separately timed runs
(benches/suites.py) can say 1% or 6% for the same build.

    python3 benches/over_ideal.py [--pairs 12] [--tests 40] [--sleep 0.05] [--cores 2]
                                  [--also /path/to/other/checkout/python]

`--also` times a second pytest-mproc (another checkout's `python/` directory, put first on
PYTHONPATH) in the same pairs, interleaved, for a before/after comparison.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from suites import run_once  # the same pytest invocation and environment as suites.py


def _run(cwd: Path, args: list[str], pythonpath: str | None = None) -> float:
    return run_once(cwd, args, None, **({"PYTHONPATH": pythonpath} if pythonpath else {}))[0]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pairs", type=int, default=12)
    ap.add_argument("--tests", type=int, default=40)
    ap.add_argument("--sleep", type=float, default=0.05)
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--also", help="another pytest-mproc's python/ directory to time alongside")
    opts = ap.parse_args()
    builds = {"this": None, **({"also": opts.also} if opts.also else {})}
    work = opts.tests * opts.sleep / opts.cores
    with tempfile.TemporaryDirectory() as tmp:
        one, suite = Path(tmp) / "one", Path(tmp) / "suite"
        one.mkdir()
        suite.mkdir()
        (one / "test_one.py").write_text("def test_one():\n    assert True\n")
        (suite / "test_sleep.py").write_text(
            f"import time, pytest\n@pytest.mark.parametrize('i', range({opts.tests}))\n"
            f"def test_sleep(i):\n    time.sleep({opts.sleep})\n")
        for _ in range(2):  # bytecode caches, warm page cache
            _run(one, [])
            for path in builds.values():
                _run(suite, ["--cores", str(opts.cores)], path)
        over: dict[str, list[float]] = {name: [] for name in builds}
        for _ in range(opts.pairs):
            for name, path in builds.items():
                before = _run(one, [])
                ours = _run(suite, ["--cores", str(opts.cores)], path)
                after = _run(one, [])
                over[name].append(ours / ((before + after) / 2 + work) - 1)
    print(f"{opts.tests} x {opts.sleep * 1e3:g} ms at --cores {opts.cores}, {opts.pairs} pairs: "
          f"over the ideal (plain 1-test start-up + {work:g} s)")
    for name, xs in over.items():
        label = name if name == "this" else f"also ({opts.also})"
        print(f"  {label}: median {100 * statistics.median(xs):.1f}%  "
              f"[{', '.join(f'{100 * x:.1f}' for x in sorted(xs))}]")


if __name__ == "__main__":
    main()
