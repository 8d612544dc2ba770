#!/usr/bin/env python3
"""Dispatch through the bridge vs single-host, same machine, side by side (interleaved rounds):

  plain        pytest
  single-host  pytest --cores N
  via-bridge   pytest --as-main 127.0.0.1:P   +   pytest --as-worker 127.0.0.1:P --cores N
               (the main runs no workers; the node's bridge pulls every test over TCP)
  xdist        pytest -n N

Wall time of via-bridge = from starting both processes until both ended. Prints medians and
the via-bridge / single-host ratio (goal: within 1.15).

    python3 benches/bridge.py [--rounds 5] [--cores 2]
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from suites import SUITES as _SINGLE_HOST_SUITES, _files  # benches/ is on sys.path when run as a script

SUITES = {
    "trivial2000": _SINGLE_HOST_SUITES["trivial2000"],
    "sleep200x10ms": lambda d: _files(d, 10, 20, "    import time; time.sleep(0.01)\n"),
}


def _cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def timed(d: Path, *cmds: list[str]) -> float:
    env = dict(os.environ, PTMPROC_AUTH_TOKEN="ab" * 32)
    t = time.perf_counter()
    procs = [subprocess.Popen(c, cwd=d, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT) for c in cmds]
    outs = [p.communicate()[0] for p in procs]
    wall = time.perf_counter() - t
    for p, out in zip(procs, outs):
        if p.returncode != 0:
            sys.exit(f"{p.args} failed:\n{out.decode()[-2000:]}")
    return wall


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--cores", type=int, default=2)
    opts = ap.parse_args()
    n = str(opts.cores)
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, {opts.rounds} rounds, {n} workers; medians (s)")
    print(f"{'suite':<14} {'plain':>7} {'single':>7} {'bridge':>7} {'xdist':>7} {'bridge/single':>14} {'bridge/xdist':>13}")
    with tempfile.TemporaryDirectory() as tmp:
        for name, build in SUITES.items():
            d = Path(tmp) / name
            d.mkdir()
            build(d)
            timed(d, _cmd())  # warm the assertion-rewrite cache
            t = {k: [] for k in ("plain", "single", "bridge", "xdist")}
            for _ in range(opts.rounds):
                t["plain"].append(timed(d, _cmd()))
                t["single"].append(timed(d, _cmd("--cores", n)))
                port = _free_port()
                t["bridge"].append(timed(d, _cmd("--as-main", f"127.0.0.1:{port}"),
                                         _cmd("--as-worker", f"127.0.0.1:{port}", "--cores", n)))
                t["xdist"].append(timed(d, _cmd("-n", n)))
            m = {k: statistics.median(v) for k, v in t.items()}
            print(f"{name:<14} {m['plain']:>7.3f} {m['single']:>7.3f} {m['bridge']:>7.3f} {m['xdist']:>7.3f} "
                  f"{m['bridge'] / m['single']:>13.2f}x {m['bridge'] / m['xdist']:>12.2f}x")


if __name__ == "__main__":
    main()
