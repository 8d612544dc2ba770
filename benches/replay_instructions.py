#!/usr/bin/env python3
"""Instructions the main spends replaying one plain passed test, counted by valgrind: a figure
that does not move with the machine's load, for before/after comparisons of the replay path
that wall-clock benches on a shared VM cannot resolve (their noise is ±10%).

A suite of N trivial tests is collected and run once in the bench's own process to record each
test's real result message (as a worker sends it); then the recorded messages are replayed
ROUNDS times through `Outcomes.result` (decode, build the reports, fire the hooks into pytest's
own plugins, terminal output to /dev/null). The process runs under `valgrind --tool=callgrind`
twice, with ROUNDS and with 0 rounds; the difference divided by ROUNDS x N is the replay's cost
per test. No ring, no workers: the figure is the main's own work, not the wait for results.

    python3 benches/replay_instructions.py [--tests 1000] [--rounds 4] [--mode=-q|-v|--junitxml]
                                           [--also /path/to/other/checkout/python]

Needs valgrind (Debian: `apt-get install valgrind`). A run takes about a minute per build.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

from suites import bench_env

PLUGIN = textwrap.dedent('''
    import gc, os, pytest
    from pytest_mproc import messages
    from pytest_mproc.replay import Outcomes, RunOutcome
    from pytest_mproc.worker import result_encoder

    class Record:
        def __init__(self):
            self.reports = []

        def pytest_runtest_logreport(self, report):
            self.reports.append(report)

    class Bench:
        @pytest.hookimpl(tryfirst=True)
        def pytest_runtestloop(self, session):
            config = session.config
            pm = config.pluginmanager
            encode = result_encoder(config, "gw0", None)
            # Record silently: the reporting plugins are taken out while the tests run.
            quiet = [p for p in (pm.getplugin("terminalreporter"),) if p is not None]
            try:
                from _pytest.junitxml import xml_key
                if config.stash.get(xml_key, None) is not None:
                    quiet.append(config.stash[xml_key])
            except ImportError:
                pass
            names = [pm.get_name(p) for p in quiet]
            for p in quiet:
                pm.unregister(p)
            record = Record()
            pm.register(record, "bench-record")
            recorded = []
            items = session.items
            for i, item in enumerate(items):
                item.ihook.pytest_runtest_protocol(item=item, nextitem=items[i + 1] if i + 1 < len(items) else None)
                recorded.append(encode(i, item, record.reports, []))
                record.reports = []
            pm.unregister(record)
            for p, name in zip(quiet, names):
                pm.register(p, name)
            gc.freeze()
            for _ in range(int(os.environ["BENCH_ROUNDS"])):
                outcomes = Outcomes(session, RunOutcome())
                for data in recorded:
                    outcomes.result(messages.decode(data))
            return True

    def pytest_configure(config):
        config.pluginmanager.register(Bench(), "bench")
''')


def _instructions(work: Path, rounds: int, mode: list[str], pythonpath: str | None, count: bool = True) -> int:
    """Instructions of one whole run (`count=False`: a plain run, to write bytecode caches)."""
    # A fixed hash seed: string hashes decide dict probing, which moves the count by ~1%.
    # Bytecode caches (bench_env), written by the warm-up run: the two counted runs must both
    # load them (a run that compiles and rewrites the modules costs millions of instructions more).
    env = bench_env(BENCH_ROUNDS=str(rounds), PYTHONHASHSEED="0", **({"PYTHONPATH": pythonpath} if pythonpath else {}))
    out = work / "callgrind.out"
    tool = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}"] if count else []
    proc = subprocess.run([*tool, sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *mode, "test_many.py"],
                          cwd=work, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if not count:
        return 0
    found = re.search(r"Collected : (\d+)", proc.stderr)
    if proc.returncode != 0 or not found:
        sys.exit(f"the bench run failed:\n{proc.stderr[-2000:]}")
    return int(found.group(1))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tests", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--mode", default="-q", choices=["-q", "-v", "--junitxml"])
    ap.add_argument("--also", help="another pytest-mproc's python/ directory to count alongside")
    opts = ap.parse_args()
    if shutil.which("valgrind") is None:
        sys.exit("valgrind is not installed (Debian: apt-get install valgrind)")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "conftest.py").write_text(PLUGIN)
        (work / "test_many.py").write_text(
            f"import pytest\n@pytest.mark.parametrize('i', range({opts.tests}))\ndef test_t(i):\n    pass\n")
        mode = ["-q", f"--junitxml={work / 'out.xml'}"] if opts.mode == "--junitxml" else [opts.mode]
        print(f"{opts.tests} plain passed tests, {opts.rounds} rounds, {opts.mode}: instructions per replayed test")
        for label, path in [("this", None)] + ([(f"also ({opts.also})", opts.also)] if opts.also else []):
            _instructions(work, 0, mode, path, count=False)
            base = _instructions(work, 0, mode, path)
            total = _instructions(work, opts.rounds, mode, path)
            print(f"  {label}: {(total - base) / (opts.rounds * opts.tests):,.0f}")


if __name__ == "__main__":
    main()
