#!/usr/bin/env python3
"""Side-by-side timing of plain pytest, pytest-mproc (--cores N) and pytest-xdist (-n N) on
synthetic suites. Runs are interleaved (A B C A B C ...) so machine noise hits all alike;
prints medians and ratios.

    python3 benches/suites.py                  # the default suites, 5 rounds
    python3 benches/suites.py --rounds 7 --only trivial2000
    python3 benches/suites.py --only sleep3200x10ms --rounds 3   # oversubscribed: --cores 32 on any box

Besides wall times: the main's CPU per test (its result loop), a worker's CPU per test next to a
serial run's CPU per test (both without start-up and collection: the serial figure is its whole
CPU minus a --collect-only run's), and for the oversubscribed suite the ideal wall time (plain
pytest's 1-test start-up + the work divided by the workers).

Runs use bytecode caches (PYTHONDONTWRITEBYTECODE is dropped from their environment), as a
normal install does; an untimed run of each suite writes them first.
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
    "sleep3200x10ms": lambda d: _files(d, 32, 100, "    import time; time.sleep(0.01)\n"),
}
# Suites run only when named (--only), with their own worker count and without plain pytest
# (the ideal is computed instead): 3200 x 10 ms needs 32 s serially.
OVERSUBSCRIBED = {"sleep3200x10ms": (32, 3200 * 0.01)}


def _files(d: Path, files: int, per: int, body: str) -> None:
    for f in range(files):
        (d / f"test_f{f:02d}.py").write_text("".join(f"def test_{i:03d}():\n{body}" for i in range(per)))


def bench_env(**extra: str) -> dict:
    """The environment of a timed pytest run: this one's, plus `extra`, with bytecode caches."""
    env = dict(os.environ, **extra)
    # As on a normal install, modules load from their bytecode caches (this project's machines
    # set PYTHONDONTWRITEBYTECODE=1, which makes an editable install compile this package's
    # ~40 modules, ~30 ms, in every run; site-packages were compiled by pip either way).
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def run_once(suite_dir: Path, args: list[str], stats: Path | None, **extra_env: str) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the whole process tree)."""
    env = bench_env(**extra_env)
    if stats:
        env["PTMPROC_STATS_FILE"] = str(stats)
    before = os.times()
    t = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args],
                       cwd=suite_dir, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    wall = time.perf_counter() - t
    after = os.times()
    if r.returncode not in (0, 5) or (r.returncode == 5 and "--collect-only" not in args):
        sys.exit(f"{args} failed in {suite_dir}:\n{r.stdout.decode()[-2000:]}")
    cpu = (after.children_user - before.children_user) + (after.children_system - before.children_system)
    return wall, cpu


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--only", action="append")
    opts = ap.parse_args()
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, {opts.rounds} rounds; medians in seconds")
    print(f"{'suite':<15} {'workers':>7} {'plain':>7} {'mproc':>7} {'xdist':>7} {'mproc/plain':>12} {'mproc/xdist':>12}"
          f"  main CPU/test  worker CPU/test  serial CPU/test")
    with tempfile.TemporaryDirectory() as tmp:
        start_up = None
        for name, build in SUITES.items():
            if (opts.only and name not in opts.only) or (not opts.only and name in OVERSUBSCRIBED):
                continue
            cores, work = OVERSUBSCRIBED.get(name, (opts.cores, None))
            modes = {"mproc": ["--cores", str(cores)], "xdist": ["-n", str(cores)]}
            if work is None:
                modes = {"plain": [], **modes}
            d = Path(tmp) / name
            d.mkdir()
            build(d)
            times = {m: [] for m in modes}
            main_cpu, worker_cpu, serial_cpu = [], [], []
            stats = Path(tmp) / "stats.json"
            run_once(d, [], None) if work is None else run_once(d, ["--collect-only"], None)  # warm caches
            run_once(d, modes["mproc"], None)  # and this package's bytecode caches
            for _ in range(opts.rounds):
                collect_cpu = run_once(d, ["--collect-only"], None)[1] if work is None else None
                for m, args in modes.items():
                    wall, cpu = run_once(d, args, stats if m == "mproc" else None)
                    times[m].append(wall)
                    if m == "plain":
                        serial_cpu.append((cpu - collect_cpu) / _count(d))
                    if m == "mproc":
                        s = json.loads(stats.read_text())
                        main_cpu.append(s["main_loop_cpu_s"] / s["tests"])
                        worker_cpu.append(sum(s["worker_cpu_s"]) / s["tests"])
            med = {m: statistics.median(v) for m, v in times.items()}
            if name == "one_test":
                start_up = med["plain"]
            if work is not None:
                if start_up is None:
                    one = Path(tmp) / "start_up"
                    one.mkdir()
                    SUITES["one_test"](one)
                    start_up = statistics.median(run_once(one, [], None)[0] for _ in range(opts.rounds))
                med["plain"] = start_up + work / cores  # the ideal
            us = lambda v: f"{statistics.median(v) * 1e6:>6.0f} us" if v else "      -"
            label = "ideal" if work is not None else ""
            print(f"{name:<15} {cores:>7} {med['plain']:>7.3f}{label} {med['mproc']:>7.3f} {med['xdist']:>7.3f} "
                  f"{med['mproc'] / med['plain']:>11.2f}x {med['mproc'] / med['xdist']:>11.2f}x"
                  f"  {us(main_cpu)}      {us(worker_cpu)}      {us(serial_cpu)}")


def _count(d: Path) -> int:
    return sum(p.read_text().count("def test_") for p in d.glob("test_*.py"))


if __name__ == "__main__":
    main()
