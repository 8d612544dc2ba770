"""What a parallel run shows while it runs: live log records from workers (`log_cli`), on a
single host and through a worker node's bridge, and the status line (only on a terminal)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time

import pytest

LIVE = """
import logging, os, pathlib, time

log = logging.getLogger("app")

def test_logs_then_waits():
    log.debug("not at this level")
    log.warning("ping from %s", os.environ["PYTEST_XDIST_WORKER"])
    # Ends only once the harness has seen the record on the main's output: it must be live.
    mark = pathlib.Path(os.environ["SEEN_MARK"])
    deadline = time.monotonic() + 60
    while not mark.exists():
        assert time.monotonic() < deadline, "the record never showed up while the test ran"
        time.sleep(0.02)
"""


def run_live(pytester, *args: str) -> str:
    pytester.makepyfile(test_live=LIVE)
    mark = pytester.path / "seen"
    out = pytester.path / "out.txt"
    env = dict(os.environ, SEEN_MARK=str(mark))
    env.pop("PYTEST_XDIST_WORKER", None)
    env.pop("PYTEST_ADDOPTS", None)
    proc = subprocess.Popen([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-o", "log_cli=true",
                             "-o", "log_cli_level=INFO", *args], cwd=pytester.path, env=env,
                            stdout=out.open("w"), stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while "ping from gw" not in out.read_text():
            assert proc.poll() is None and time.monotonic() < deadline, out.read_text()
            time.sleep(0.02)
        mark.touch()
        assert proc.wait(60) == 0, out.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
    return out.read_text()


def test_log_cli_records_from_workers_are_live_and_at_the_level(pytester):
    text = run_live(pytester, "--cores", "2")
    assert re.search(r"^\[(gw\d)\] WARNING +app:test_live.py:\d+ ping from \1$", text, re.M), text
    assert "not at this level" not in text


def test_log_cli_records_come_over_a_worker_nodes_bridge(pytester):
    """--as-main with --cores: the main's workers run in a worker node, their results (and
    records) reach the main through the node's bridge; the prefix names the node."""
    text = run_live(pytester, "--as-main", "127.0.0.1", "--cores", "1")
    assert re.search(r"^\[\S+:main/gw0\] WARNING +app:test_live.py:\d+ ping from gw0$", text, re.M), text


SLOW = """
import os, pathlib, time

def test_slow():
    # The work: long enough for the status line to show it.
    time.sleep(2.5)
"""


def test_status_line_only_on_a_terminal(pytester):
    pytester.makepyfile(test_slow=SLOW)
    piped = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--cores", "2")
    piped.assert_outcomes(passed=1)
    assert "\x1b[2m" not in piped.stdout.str() and "test_slow.py::test_slow 1s" not in piped.stdout.str()
    if shutil.which("script") is None:
        pytest.skip("no script(1) for a pseudo-terminal")
    cmd = f"{sys.executable} -m pytest -p no:cacheprovider --cores 2"
    tty = subprocess.run(["script", "-qec", cmd, "/dev/null"], cwd=pytester.path, capture_output=True,
                         text=True, timeout=120).stdout
    assert re.search(r"\x1b\[2mgw\d test_slow\.py::test_slow [12]s\x1b\[0m", tty), repr(tty[-2000:])
    # Erased again before the result and the summary are written.
    assert re.search(r"\x1b\[\d+D\x1b\[K", tty)
    assert "1 passed" in tty


def test_status_line_of_a_multi_host_main_names_the_nodes(pytester):
    """The main of a multi-host run shows what each node runs (here its own local node)."""
    if shutil.which("script") is None:
        pytest.skip("no script(1) for a pseudo-terminal")
    pytester.makepyfile(test_slow=SLOW)
    cmd = f"{sys.executable} -m pytest -p no:cacheprovider --as-main 127.0.0.1 --cores 1"
    tty = subprocess.run(["script", "-qec", cmd, "/dev/null"], cwd=pytester.path, capture_output=True,
                         text=True, timeout=120).stdout
    assert re.search(r"\x1b\[2m\S+:main test_slow\.py::test_slow [12]s\x1b\[0m", tty), repr(tty[-2000:])
    assert "1 passed" in tty
