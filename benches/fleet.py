#!/usr/bin/env python3
"""Fleet runs (`--remote-worker`) on 4 hosts = 4 network namespaces, each with its own sshd
(throwaway keys, tests/sshd.py), vs the same run with hand-started `--as-worker` nodes.

  first    fleet run on a fresh host cache: bundle + runtime sent, venv installed
  cached   the same again: nothing sent, venv reused (median of --rounds)
  by hand  pytest --as-main 0.0.0.0:P  +  4 x `ip netns exec nsK pytest --as-worker ...`
           started at the same moment (median of --rounds)

  service  the same 4 hosts handed out by examples/reservation/reservation_service.py
           (one host ready every --prepare-seconds): time from the first host line to the
           first test result at the main (from the run's summary line)

Per phase: when each host reached it (seconds after the fleet started), from PTMPROC_VERBOSE.
Goal: cached re-run within 1.5 s of the hand-started run. Needs root.

    python3 benches/fleet.py [--rounds 3] [--tests 400] [--cores 1]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
import netns  # noqa: E402
import sshd  # noqa: E402

PHASE = re.compile(r"fleet: Worker-(\d+) \S+: (\w+) .*at ([\d.]+) s$")


def suite(root: Path, cache: Path, tmp_root: Path, tests: int) -> None:
    (root / "tests").mkdir(parents=True)
    (root / "conftest.py").write_text(
        "from pathlib import Path\nimport pytest_mproc\n"
        f"pytest_mproc.Settings.set_cached_dir(Path({str(cache)!r}))\n"
        f"pytest_mproc.Settings.set_tmp_root(Path({str(tmp_root)!r}))\n")
    (root / "tests" / "test_bench.py").write_text(
        "import time, pytest\n"
        f"@pytest.mark.parametrize('i', range({tests}))\n"
        "def test_work(i):\n    time.sleep(0.005)\n")
    (root / "ptmproc_project.cfg").write_text(json.dumps({"project_name": "bench", "test_files": ["conftest.py", "tests/*.py"]}))


def timed(cmd: list[str], cwd: Path, env: dict) -> tuple[float, str]:
    t = time.perf_counter()
    r = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if r.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} exited {r.returncode}:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}")
    return wall, r.stdout + r.stderr


def phases(text: str) -> dict:
    out = defaultdict(dict)
    for line in text.splitlines():
        m = PHASE.search(line)
        if m:
            out[m.group(2)][int(m.group(1))] = float(m.group(3))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--tests", type=int, default=400)
    ap.add_argument("--cores", type=int, default=1)
    ap.add_argument("--prepare-seconds", type=float, default=1.0)
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("needs root (network namespaces, sshd)")
    work = Path(tempfile.mkdtemp(prefix="ptmproc-fleet-bench-"))
    ns = netns.Namespaces()
    servers = []
    try:
        client = sshd.Client(work / "client")
        hosts = []
        for k, subnet in enumerate(netns.free_subnets(4)):
            name = ns.add(f"h{k}")
            near, far = ns.join(None, name, subnet)
            s = sshd.Server(work / f"sshd{k}", client, host=far, netns=name).start()
            client.trust(s)
            servers.append(s)
            hosts.append((name, near, s))
        proj = work / "proj"
        suite(proj, work / "cache", work / "tmp", args.tests)
        (work / "tmp").mkdir()
        env = dict(os.environ, PTMPROC_VERBOSE="1", PTMPROC_HOST_ARTIFACTS_DIR=str(work / "artifacts"))
        env.pop("PYTEST_XDIST_WORKER", None)
        port = sshd.free_port("0.0.0.0")
        base_cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--mproc-ssh-config={client.config}",
                    "--as-main", f"0.0.0.0:{port}", "--cores", str(args.cores)]
        fleet_cmd = list(base_cmd)
        for _, _, s in hosts:
            fleet_cmd += ["--remote-worker", s.address]

        first, text = timed(fleet_cmd, proj, env)
        first_phases = phases(text)
        cached, cached_phases = [], None
        by_hand = []
        token = "ab" * 16
        for _ in range(args.rounds):
            wall, text = timed(fleet_cmd, proj, env)
            cached.append(wall)
            cached_phases = phases(text)
            # Hand-started: the main and 4 nodes at once (same interpreter, same project dir).
            e = dict(env, PTMPROC_AUTH_TOKEN=token)
            e.pop("PTMPROC_VERBOSE")
            t = time.perf_counter()
            m = subprocess.Popen([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--as-main", f"0.0.0.0:{port}"],
                                 cwd=proj, env=e, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            nodes = [subprocess.Popen(["ip", "netns", "exec", name, sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                                       "--as-worker", f"{near}:{port}", "--cores", str(args.cores)],
                                      cwd=proj, env=e, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                     for name, near, _ in hosts]
            out = m.communicate()[0]
            for n in nodes:
                n.wait()
            by_hand.append(time.perf_counter() - t)
            if m.returncode != 0:
                raise SystemExit(f"hand-started main exited {m.returncode}:\n{out[-2000:]}")

        # A reservation service handing out the same hosts, one every --prepare-seconds.
        pool = work / "pool.jsonl"
        pool.write_text("".join(json.dumps({"host": s.address}) + "\n" for _, _, s in hosts))
        svc_port = sshd.free_port()
        svc = subprocess.Popen([sys.executable, str(HERE.parent / "examples" / "reservation" / "reservation_service.py"),
                                str(pool), "--port", str(svc_port), "--prepare-seconds", str(args.prepare_seconds)],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        svc.stdout.readline()
        first_result = []
        try:
            for _ in range(args.rounds):
                cmd = base_cmd + ["--remote-worker", f"http://127.0.0.1:{svc_port}/reserve?count=4"]
                wall, text = timed(cmd, proj, env)
                m = re.search(r"first result ([\d.]+) s after that host arrived", text)
                first_result.append(float(m.group(1)) if m else float("nan"))
        finally:
            svc.terminate()
            svc.wait()

        def row(label, ph):
            cells = []
            for p in ("connected", "bundle", "venv", "started", "done"):
                v = ph.get(p, {})
                cells.append(f"{max(v.values()):.2f}" if v else "-")
            return f"| {label} | " + " | ".join(cells) + " |"

        print(f"\n4 hosts (network namespaces, sshd each), {args.tests} tests of 5 ms, --cores {args.cores} per host, "
              f"{args.rounds} rounds\n")
        print("| run | wall (s) |\n|---|---|")
        print(f"| fleet, first run (fresh cache) | {first:.2f} |")
        print(f"| fleet, cached re-run (median) | {statistics.median(cached):.2f} |")
        print(f"| hand-started --as-worker nodes (median) | {statistics.median(by_hand):.2f} |")
        print(f"| cached re-run minus hand-started | {statistics.median(cached) - statistics.median(by_hand):+.2f} |")
        print(f"| reservation service: first host line -> first test result (median) | {statistics.median(first_result):.2f} |")
        print("\nslowest host reaching each phase (s after the fleet started)\n")
        print("| run | connected | bundle | venv | node started | done |\n|---|---|---|---|---|---|")
        print(row("first", first_phases))
        print(row("cached", cached_phases or {}))
    finally:
        for s in servers:
            s.stop()
        ns.close()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
