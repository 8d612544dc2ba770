#!/usr/bin/env python3
"""Fixture benchmarks, pytest-mproc vs pytest-xdist (session fixtures), interleaved rounds:

1. a 1 s global fixture used by 40 tests (--cores 2 vs -n 2);
2. 20 node fixtures of 0.3 s each, 400 tests each using 3 of them (at 2 and 4 workers), with
   how many times the fixtures ran;
3. read latency of a 5 MB fixture value: from the shared-memory fixture store vs receiving and
   unpickling it from a socket.

    python3 benches/fixtures.py --rounds 3
"""

from __future__ import annotations

import argparse
import os
import pickle
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

GLOBAL_SUITE = {
    "conftest.py": """
import os, time, pytest
from pytest_mproc.fixtures import global_fixture

def _count():
    with open(os.environ["FXCOUNT"], "a") as f: f.write("x")

if os.environ.get("MODE") == "mproc":
    @global_fixture()
    def expensive():
        _count(); time.sleep(1.0); return 42
else:
    @pytest.fixture(scope="session")
    def expensive():
        _count(); time.sleep(1.0); return 42
""",
    "test_g.py": """
import pytest
@pytest.mark.parametrize("n", range(40))
def test_uses(n, expensive): assert expensive == 42
""",
}

NODE_SUITE = {
    "conftest.py": """
import os, time, pytest
from pytest_mproc.fixtures import node_fixture

def _count():
    with open(os.environ["FXCOUNT"], "a") as f: f.write("x")

def _make(i):
    def fx():
        _count(); time.sleep(0.3); return i
    fx.__name__ = f"nf{i}"
    if os.environ.get("MODE") == "mproc":
        return node_fixture()(fx)
    return pytest.fixture(scope="session")(fx)

for _i in range(20):
    globals()[f"nf{_i}"] = _make(_i)
""",
    "test_n.py": "import pytest\n" + "".join(
        f"def test_{t}(nf{t % 20}, nf{(t + 7) % 20}, nf{(t + 13) % 20}): pass\n" for t in range(400)),
}


def run(d: Path, args: list[str], mode: str) -> tuple[float, int]:
    count = d / "count.txt"
    count.write_text("")
    env = dict(os.environ, MODE=mode, FXCOUNT=str(count))
    t = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args], cwd=d, env=env,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    wall = time.perf_counter() - t
    if r.returncode != 0:
        sys.exit(r.stdout.decode()[-3000:])
    return wall, len(count.read_text())


def suite(tmp: Path, name: str, files: dict) -> Path:
    d = tmp / name
    d.mkdir()
    for fname, text in files.items():
        (d / fname).write_text(text)
    return d


def compare(d: Path, workers: int, rounds: int, label: str) -> None:
    res = {"mproc": [], "xdist": []}
    runs = {"mproc": 0, "xdist": 0}
    for _ in range(rounds):
        w, n = run(d, ["--cores", str(workers)], "mproc")
        res["mproc"].append(w); runs["mproc"] = n
        w, n = run(d, ["-n", str(workers)], "xdist")
        res["xdist"].append(w); runs["xdist"] = n
    m, x = statistics.median(res["mproc"]), statistics.median(res["xdist"])
    print(f"{label:<42} {workers:>2}  {m:7.2f} {x:7.2f}  {m / x:6.2f}x   {runs['mproc']:>4} {runs['xdist']:>4}")


def read_latency() -> None:
    from pytest_mproc import _core

    value = {"blob": os.urandom(5 << 20)}
    data = b"V" + pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    store = _core.Store.create()
    store.put("node:big", data)
    reader = _core.Store.attach(store.path)
    shm = []
    for _ in range(50):
        t = time.perf_counter()
        pickle.loads(reader.get("node:big")[1:])
        shm.append(time.perf_counter() - t)
    a, b = socket.socketpair()
    sock = []
    for _ in range(50):
        pid = os.fork()
        if pid == 0:
            a.sendall(len(data).to_bytes(8, "little") + data)
            os._exit(0)
        t = time.perf_counter()
        n = int.from_bytes(b.recv(8, socket.MSG_WAITALL), "little")
        buf = bytearray(n)
        view, got = memoryview(buf), 0
        while got < n:
            got += b.recv_into(view[got:])
        pickle.loads(bytes(buf[1:]))
        sock.append(time.perf_counter() - t)
        os.waitpid(pid, 0)
    print(f"5 MB fixture value read + unpickle: shm store median {statistics.median(shm) * 1e3:.2f} ms, "
          f"unix socket median {statistics.median(sock) * 1e3:.2f} ms")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    opts = ap.parse_args()
    print(f"{opts.rounds} rounds, medians in seconds")
    print(f"{'suite':<42} {'N':>2}  {'mproc':>7} {'xdist':>7}  {'ratio':>7}   fixture runs (mproc xdist)")
    with tempfile.TemporaryDirectory() as tmp:
        g = suite(Path(tmp), "global", GLOBAL_SUITE)
        compare(g, 2, opts.rounds, "1 s global fixture, 40 tests")
        n = suite(Path(tmp), "node", NODE_SUITE)
        for workers in (2, 4):
            compare(n, workers, opts.rounds, "20 x 0.3 s node fixtures, 400 tests x 3")
    read_latency()


if __name__ == "__main__":
    main()
