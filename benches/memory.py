#!/usr/bin/env python3
"""Memory of a whole run: plain pytest vs `--cores N` vs `xdist -n N` on one suite directory.

Every 0.1 s the bench sums the proportional set size (PSS, /proc/PID/smaps_rollup) of the
pytest process and all its descendants: pages shared copy-on-write between the main and its
forked workers count once in total, so the sum is the physical memory the run uses. Reported:
the peak of that sum, the main's own peak RSS, and per worker the peak PSS, for each mode.

    python3 benches/memory.py --dir /tmp/pkgsuite/packaging-26.4 --python /tmp/suites/venv/bin/python \\
        --cores 4 --cores 16 [--rounds 1] [-- extra pytest args]

packaging's suite (64 207 tests), as measured in docs/benchmarks.md: a venv with pytest,
pytest-xdist, this package and packaging's test dependencies, and its sdist:

    python3 -m venv /tmp/pk && /tmp/pk/bin/pip install pytest pytest-xdist hypothesis pretend tomli_w -e .
    /tmp/pk/bin/pip download --no-deps --no-binary :all: packaging==26.4 -d /tmp/pkgsuite
    tar xzf /tmp/pkgsuite/packaging-26.4.tar.gz -C /tmp/pkgsuite
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import threading
import time


def _children() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        kids.setdefault(ppid, []).append(int(name))
    return kids


def _tree(root: int) -> list[int]:
    kids, out, todo = _children(), [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(kids.get(pid, []))
    return out


def _rollup(pid: int) -> tuple[int, int]:
    """(rss_kb, pss_kb) of `pid`, (0, 0) if it is gone."""
    rss = pss = 0
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Rss:"):
                    rss = int(line.split()[1])
                elif line.startswith("Pss:"):
                    pss = int(line.split()[1])
    except OSError:
        pass
    return rss, pss


def measure(cmd: list[str], cwd: str) -> dict:
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    peak = {"total_pss": 0, "main_rss": 0, "workers": 0, "worker_pss": 0}
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            pids = _tree(proc.pid)
            figures = {pid: _rollup(pid) for pid in pids}
            total = sum(p for _, p in figures.values())
            peak["total_pss"] = max(peak["total_pss"], total)
            peak["main_rss"] = max(peak["main_rss"], figures.get(proc.pid, (0, 0))[0])
            others = [p for pid, (_, p) in figures.items() if pid != proc.pid and p]
            if others:
                peak["workers"] = max(peak["workers"], len(others))
                peak["worker_pss"] = max(peak["worker_pss"], max(others))
            done.wait(0.1)

    t = threading.Thread(target=sample, daemon=True)
    start = time.perf_counter()
    t.start()
    proc.wait()
    peak["wall"] = time.perf_counter() - start
    done.set()
    t.join()
    return peak


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", required=True)
    ap.add_argument("--python", default=sys.executable)
    ap.add_argument("--cores", type=int, action="append")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("extra", nargs="*")
    opts = ap.parse_args()
    base = [opts.python, "-m", "pytest", "-q", "-p", "no:cacheprovider", *opts.extra]
    modes = {"plain": []}
    for n in opts.cores or [4]:
        modes[f"--cores {n}"] = ["--cores", str(n)]
        modes[f"-n {n}"] = ["-n", str(n)]
    rows = {m: [] for m in modes}
    for _ in range(opts.rounds):
        for mode, args in modes.items():
            rows[mode].append(measure(base + args, opts.dir))
    med = {m: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for m, rs in rows.items()}
    serial = med["plain"]["total_pss"]
    print(f"\n{opts.dir}, {opts.rounds} round(s), medians\n")
    print("| run | wall (s) | peak total PSS (MB) | vs plain | main peak RSS (MB) | processes | peak PSS of one worker (MB) |")
    print("|---|---|---|---|---|---|---|")
    for mode, m in med.items():
        print(f"| {mode} | {m['wall']:.1f} | {m['total_pss'] / 1024:.0f} | {m['total_pss'] / serial:.2f}x | "
              f"{m['main_rss'] / 1024:.0f} | {int(m['workers'])} | {m['worker_pss'] / 1024:.0f} |")


if __name__ == "__main__":
    main()
