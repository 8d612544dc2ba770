"""Reliability soak: rounds of a 2000-test run, each with one process SIGKILLed at a random
moment, counting what went wrong.

    python benches/soak.py [--rounds 50] [--mode single|multi|both] [--tests 2000] [--seed N]

single-host rounds kill a worker (most rounds) or the fork server; multi-host rounds (a main
and two worker nodes of one worker each, on 127.0.0.1) kill a worker on a node, a node's
bridge, or a whole node. Per round it records:
- tests without exactly one result in the main's junit XML (a worker or node kill must still
  give every test exactly one result: crashed, re-queued or run; a fork-server kill ends the
  run, so there only duplicates count),
- hangs (the run did not end within its time limit),
- orphans (a process of the round still alive 10 s after the run ended),
- /dev/shm leftovers (files that were not there before the round).
Prints one line per round and a summary table (markdown) at the end.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import uuid
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from cluster import tagged_processes  # noqa: E402 (the tests' helper)

SUITE = """
import time, pytest

@pytest.mark.parametrize("i", range({n}))
def test_work(i):
    time.sleep(0.003)
"""
TIME_LIMIT = 120


def tagged(tag: str) -> list[int]:
    return tagged_processes("SOAK_TAG", tag)


def children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def spawn(args: list[str], cwd: Path, tag: str, out: Path, extra_env: dict | None = None) -> subprocess.Popen:
    env = dict(os.environ, SOAK_TAG=tag, PTMPROC_AUTH_TOKEN="ab" * 16, PYTHONUNBUFFERED="1", **(extra_env or {}))
    env.pop("PYTEST_ADDOPTS", None)
    return subprocess.Popen([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", *args], cwd=cwd, env=env,
                            stdout=out.open("w"), stderr=subprocess.STDOUT, start_new_session=True)


def results(junit: Path, n: int) -> tuple[int, int]:
    """(tests without a result, tests with more than one)."""
    if not junit.exists():
        return n, 0
    names = Counter(case.get("name") for case in ET.parse(junit).getroot().iter("testcase"))
    missing = sum(1 for i in range(n) if names[f"test_work[{i}]"] == 0)
    dup = sum(1 for c in names.values() if c > 1)
    return missing, dup


def wait_end(procs: list[subprocess.Popen]) -> bool:
    deadline = time.monotonic() + TIME_LIMIT
    for p in procs:
        try:
            p.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            return False
    return True


def orphans(tag: str) -> int:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        left = tagged(tag)
        if not left:
            return 0
        time.sleep(0.1)  # polling for processes to be reaped, bounded
    left = tagged(tag)
    for pid in left:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return len(left)


def single_round(rng: random.Random, work: Path, n: int) -> dict:
    tag = uuid.uuid4().hex
    junit = work / f"junit-{tag}.xml"
    main = spawn(["--cores", "2", f"--junitxml={junit}", "test_soak.py"], work, tag, work / f"out-{tag}.txt")
    time.sleep(rng.uniform(0.8, 3.0))  # a random moment of the run, not a synchronisation
    fs = children(main.pid)
    victim, what = None, "nothing (run ended first)"
    if fs:
        workers = children(fs[0])
        if rng.random() < 0.15 or not workers:
            victim, what = fs[0], "fork server"
        else:
            victim, what = rng.choice(workers), "worker"
    if victim:
        try:
            os.kill(victim, signal.SIGKILL)
        except ProcessLookupError:
            what += " (already gone)"
    ended = wait_end([main])
    if not ended:
        for pid in tagged(tag):
            os.kill(pid, signal.SIGKILL)
    missing, dup = results(junit, n)
    if what.startswith("fork server"):
        missing = 0  # the run ends on purpose; only duplicates would be wrong
    return dict(killed=what, missing=missing, dup=dup, hang=not ended, orphans=orphans(tag), rc=main.returncode)


def multi_round(rng: random.Random, work: Path, n: int) -> dict:
    tag = uuid.uuid4().hex
    junit = work / f"junit-{tag}.xml"
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    nodes = [spawn(["--as-worker", f"127.0.0.1:{port}", "--cores", "1", "--basetemp", str(work / f"bt-{tag}-{k}"),
                    "test_soak.py"], work, tag, work / f"node{k}-{tag}.txt") for k in range(2)]
    main = spawn(["--as-main", f"127.0.0.1:{port}", f"--junitxml={junit}", "test_soak.py"], work, tag,
                 work / f"main-{tag}.txt")
    time.sleep(rng.uniform(1.0, 3.0))  # a random moment of the run, not a synchronisation
    node = rng.choice(nodes)
    kids = children(node.pid)
    bridge = [p for p in kids if not children(p)]  # the fork server has workers; the bridge has none
    fs = [p for p in kids if children(p)]
    choice = rng.random()
    victim, what = None, "nothing (run ended first)"
    if choice < 0.5 and fs and children(fs[0]):
        victim, what = rng.choice(children(fs[0])), "worker on a node"
    elif choice < 0.75 and bridge:
        victim, what = bridge[0], "bridge"
    elif node.poll() is None:
        victim, what = node.pid, "whole node"
    if victim:
        try:
            os.killpg(victim, signal.SIGKILL) if what == "whole node" else os.kill(victim, signal.SIGKILL)
        except ProcessLookupError:
            what += " (already gone)"
    ended = wait_end([main, *nodes])
    if not ended:
        for pid in tagged(tag):
            os.kill(pid, signal.SIGKILL)
    missing, dup = results(junit, n)
    return dict(killed=what, missing=missing, dup=dup, hang=not ended, orphans=orphans(tag), rc=main.returncode)


def shm_files() -> set[str]:
    """Files in /dev/shm, but for the project's own fuzzer's (scripts/fuzz.sh may run beside)."""
    try:
        return {f for f in os.listdir("/dev/shm") if not f.startswith("ptm-fuzz-")}
    except OSError:
        return set()


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=50)
    ap.add_argument("--mode", choices=("single", "multi", "both"), default="both")
    ap.add_argument("--tests", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=int(time.time()))
    a = ap.parse_args()
    rng = random.Random(a.seed)
    print(f"seed {a.seed}")
    work = Path(tempfile.mkdtemp(prefix="ptm-soak-"))
    (work / "test_soak.py").write_text(SUITE.format(n=a.tests))
    modes = ["single", "multi"] if a.mode == "both" else [a.mode]
    table = []
    for mode in modes:
        totals = Counter()
        kinds = Counter()
        for r in range(a.rounds):
            before = shm_files()
            res = (single_round if mode == "single" else multi_round)(rng, work, a.tests)
            res["shm_left"] = len(shm_files() - before)
            kinds[res["killed"]] += 1
            for k in ("missing", "dup", "orphans", "shm_left"):
                totals[k] += res[k]
            totals["hang"] += int(res["hang"])
            totals["bad_rounds"] += int(bool(res["missing"] or res["dup"] or res["hang"] or res["orphans"] or res["shm_left"]))
            print(f"{mode} round {r + 1}: killed {res['killed']}, rc {res['rc']}, no result {res['missing']}, "
                  f"duplicated {res['dup']}, hang {res['hang']}, orphans {res['orphans']}, shm left {res['shm_left']}",
                  flush=True)
        table.append((mode, a.rounds, dict(kinds), totals))
    print("\n| mode | rounds | kills | tests without a result | duplicated | hangs | orphans | /dev/shm left | bad rounds |")
    print("|---|---|---|---|---|---|---|---|---|")
    for mode, rounds, kinds, t in table:
        k = ", ".join(f"{v} {n}" for n, v in sorted(kinds.items()))
        print(f"| {mode} | {rounds} | {k} | {t['missing']} | {t['dup']} | {t['hang']} | {t['orphans']} | "
              f"{t['shm_left']} | {t['bad_rounds']} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
