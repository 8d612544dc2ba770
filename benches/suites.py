#!/usr/bin/env python3
"""Side-by-side timing of plain pytest, pytest-mproc (--cores N) and pytest-xdist (-n N) on
synthetic suites. Runs are interleaved (A B C A B C ...) so machine noise hits all alike;
prints medians and ratios.

    python3 benches/suites.py                  # all suites, 5 rounds
    python3 benches/suites.py --rounds 7 --only trivial2000
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SUITES = {
    "trivial2000": lambda d: _files(d, 20, 100, "    assert 1 + 1 == 2\n"),
    "one_test": lambda d: _files(d, 1, 1, "    assert True\n"),
    "sleep40x50ms": lambda d: _files(d, 4, 10, "    import time; time.sleep(0.05)\n"),
}


def _files(d: Path, files: int, per: int, body: str) -> None:
    for f in range(files):
        (d / f"test_f{f:02d}.py").write_text("".join(f"def test_{i:03d}():\n{body}" for i in range(per)))


def run_once(suite_dir: Path, args: list[str], stats: Path | None) -> float:
    env = dict(os.environ)
    if stats:
        env["PTMPROC_STATS_FILE"] = str(stats)
    t = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args],
                       cwd=suite_dir, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    wall = time.perf_counter() - t
    if r.returncode != 0:
        sys.exit(f"{args} failed in {suite_dir}:\n{r.stdout.decode()[-2000:]}")
    return wall


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--only", action="append")
    opts = ap.parse_args()
    modes = {"plain": [], "mproc": ["--cores", str(opts.cores)], "xdist": ["-n", str(opts.cores)]}
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, {opts.rounds} rounds, "
          f"--cores/-n {opts.cores}; medians in seconds")
    print(f"{'suite':<14} {'plain':>7} {'mproc':>7} {'xdist':>7} {'mproc/plain':>12} {'mproc/xdist':>12}"
          f"  main CPU/test")
    with tempfile.TemporaryDirectory() as tmp:
        for name, build in SUITES.items():
            if opts.only and name not in opts.only:
                continue
            d = Path(tmp) / name
            d.mkdir()
            build(d)
            times = {m: [] for m in modes}
            main_cpu = []
            stats = Path(tmp) / "stats.json"
            run_once(d, [], None)  # warm the assertion-rewrite cache
            for _ in range(opts.rounds):
                for m, args in modes.items():
                    times[m].append(run_once(d, args, stats if m == "mproc" else None))
                    if m == "mproc":
                        s = json.loads(stats.read_text())
                        main_cpu.append(s["main_loop_cpu_s"] / s["tests"])
            med = {m: statistics.median(v) for m, v in times.items()}
            print(f"{name:<14} {med['plain']:>7.3f} {med['mproc']:>7.3f} {med['xdist']:>7.3f} "
                  f"{med['mproc'] / med['plain']:>11.2f}x {med['mproc'] / med['xdist']:>11.2f}x"
                  f"  {statistics.median(main_cpu) * 1e6:>6.0f} us")


if __name__ == "__main__":
    main()
