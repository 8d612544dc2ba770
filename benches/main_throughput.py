#!/usr/bin/env python3
"""How many results per second the main can replay: the ceiling of a big box (#13).

The main's side of a `--cores` run, without workers: a suite of N trivial tests is collected,
every test is run once serially in the bench's own process to record its real serialized
reports (as a worker would send them: messages.RESULT tuples), then a producer process pushes
those recorded messages into a results ring as fast as the main takes them, and the main
replays them through exactly the path single_host.py uses (`Outcomes.result`). Reported: tests
per second absorbed and CPU per test, at `-q`, `-v`, `--junitxml`, next to plain pytest's own
reporting of the same tests (a serial run minus running them is not separable, so the serial
figure is the whole serial run's per-test cost).

    python3 benches/main_throughput.py [--tests 20000] [--rounds 3] [--modes=-q,-v,--junitxml]

BENCH_PROFILE=FILE writes a cProfile of the replay loop (the last run) to FILE; BENCH_RING=N
sets the results ring's capacity (default 1024: the producer blocks on a full ring, as workers
do when the main is the bottleneck).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

PLUGIN = textwrap.dedent('''
    import os, time, pytest
    from pytest_mproc import _core, messages
    from pytest_mproc.replay import Outcomes, RunOutcome
    from pytest_mproc.rings import BatchReader
    from pytest_mproc.worker import result_encoder

    class Bench:
        @pytest.hookimpl(tryfirst=True)
        def pytest_runtestloop(self, session):
            config = session.config
            encode = result_encoder(config, "gw0", None)
            # Record: run each test once here, silently, keeping its serialized reports.
            recorded = []
            class Grab:
                def __init__(self): self.reports = []
                def pytest_runtest_logreport(self, report): self.reports.append(report)
            grab = Grab()
            tr = config.pluginmanager.getplugin("terminalreporter")
            config.pluginmanager.unregister(tr)
            xml = None
            try:
                from _pytest.junitxml import xml_key
                xml = config.stash.get(xml_key, None)
                if xml is not None:
                    config.pluginmanager.unregister(xml)
            except ImportError:
                pass
            config.pluginmanager.register(grab, "bench-grab")
            items = session.items
            for i, item in enumerate(items):
                nxt = items[i + 1] if i + 1 < len(items) else None
                item.ihook.pytest_runtest_protocol(item=item, nextitem=nxt)
                recorded.append(encode(i, item, grab.reports, []))
                grab.reports = []
            config.pluginmanager.unregister(grab)
            config.pluginmanager.register(tr, "terminalreporter")
            if xml is not None:
                config.pluginmanager.register(xml)
            for item in items:  # the replay computes what the worker would have sent
                item.__dict__.pop("location", None)
            ring = _core.Ring.create(capacity=int(os.environ.get("BENCH_RING", 1024)), slot_size=2048, leases=4, arena_bytes=64 << 20)
            pid = os.fork()
            if pid == 0:  # the producer: as fast as the ring takes them
                for data in recorded:
                    ring.push(data)
                os._exit(0)
            outcomes = Outcomes(session, RunOutcome())
            reader = BatchReader(ring)
            prof = None
            if os.environ.get("BENCH_PROFILE"):
                import cProfile
                prof = cProfile.Profile()
                prof.enable()
            t0, w0 = time.process_time(), time.perf_counter()
            while outcomes.remaining:
                data = reader.pop(timeout=5)
                if data is None:
                    break
                outcomes.result(messages.decode(data))
            cpu, wall = time.process_time() - t0, time.perf_counter() - w0
            if prof is not None:
                prof.disable()
                prof.dump_stats(os.environ["BENCH_PROFILE"])
            os.waitpid(pid, 0)
            with open(os.environ["BENCH_OUT"], "w") as f:
                f.write(f"{cpu} {wall} {len(items)}\\n")
            return True

    def pytest_configure(config):
        if os.environ.get("BENCH_OUT"):
            config.pluginmanager.register(Bench(), "bench")
''')


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tests", type=int, default=20000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--modes", default="-q,-v,--junitxml", help="comma-separated subset of -q,-v,--junitxml")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="ptmproc-tput-"))
    (work / "conftest.py").write_text(PLUGIN)
    (work / "test_many.py").write_text(
        f"import pytest\n@pytest.mark.parametrize('i', range({args.tests}))\ndef test_t(i):\n    pass\n")
    env = dict(os.environ)
    env.pop("PYTEST_XDIST_WORKER", None)
    modes = {"-q": ["-q"], "-v": ["-v"], "--junitxml": ["-q", f"--junitxml={work / 'out.xml'}"]}
    modes = {m: modes[m] for m in args.modes.split(",")}
    rows = {m: [] for m in modes}
    serial = []
    for _ in range(args.rounds):
        for mode, extra in modes.items():
            out = work / "bench.out"
            subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *extra, "test_many.py"],
                           cwd=work, env=dict(env, BENCH_OUT=str(out)), stdout=subprocess.DEVNULL, check=True)
            cpu, wall, n = out.read_text().split()
            rows[mode].append((float(cpu) / int(n), int(n) / float(wall)))
        t = time.perf_counter()
        subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "test_many.py"],
                       cwd=work, env=env, stdout=subprocess.DEVNULL, check=True)
        serial.append(time.perf_counter() - t)
    print(f"\n{args.tests} trivial tests, {args.rounds} rounds (medians)\n")
    print("| main replaying at | CPU per test (µs) | tests/s absorbed |\n|---|---|---|")
    for mode, vals in rows.items():
        print(f"| {mode} | {statistics.median(v[0] for v in vals) * 1e6:.1f} | {statistics.median(v[1] for v in vals):,.0f} |")
    per = statistics.median(serial) / args.tests
    print(f"| plain pytest -q, whole run per test (collection included) | {per * 1e6:.1f} | {1 / per:,.0f} |")


if __name__ == "__main__":
    main()
