"""Hang reports: a long-running test is named with its worker and that worker's stack, without
being stopped; SIGQUIT reports every running test; Ctrl-C names the tests it cut off; worker
nodes send their reports to the main."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

from cluster import Cluster

BLOCKING = """
import os, time

def _wait_for_release(name):
    open(os.path.join(os.environ["GATE"], "started-" + name), "w").close()
    deadline = time.monotonic() + 60
    while not os.path.exists(os.path.join(os.environ["GATE"], "release")) and time.monotonic() < deadline:
        time.sleep(0.01)

def test_one():
    _wait_for_release("one")

def test_two():
    _wait_for_release("two")
"""


def test_a_long_test_is_reported_once_with_its_stack_and_not_stopped(run, pytester):
    pytester.makepyfile(test_h="""
import time

def test_sleeps_a_while():
    time.sleep(2.5)  # the slow test this feature is about

def test_quick():
    pass
""")
    result = run("--cores", "2", "--mproc-hang-report", "1")
    result.assert_outcomes(passed=2)
    out = result.stdout.str()
    assert out.count("pytest-mproc hang report") == 1, out
    assert re.search(r"test_h.py::test_sleeps_a_while has been running for 1\.\d s on worker gw\d \(pid \d+\)", out), out
    assert re.search(r'File ".*test_h.py", line 4 in test_sleeps_a_while', out), out


def test_hang_report_zero_is_off(run, pytester):
    pytester.makepyfile(test_h="import time\ndef test_s():\n    time.sleep(1.5)\n")
    result = run("--cores", "1", "--mproc-hang-report", "0")
    result.assert_outcomes(passed=1)
    assert "hang report" not in result.stdout.str()


def _start(path, *args, env=None):
    e = {k: v for k, v in os.environ.items() if not k.startswith(("PTMPROC_WORKER", "PYTEST_XDIST", "PYTEST_ADDOPTS"))}
    e.update(GATE=str(path), PYTHONUNBUFFERED="1", **(env or {}))
    out = open(path / "out.txt", "w")
    return subprocess.Popen([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args], cwd=path, env=e,
                            stdout=out, stderr=subprocess.STDOUT), path / "out.txt"


def _wait(pred, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, f"no {what} within {timeout} s"
        time.sleep(0.01)  # polling for the other process's progress, bounded


def test_sigquit_reports_every_running_test(pytester):
    pytester.makepyfile(test_b=BLOCKING)
    proc, out = _start(pytester.path, "--cores", "2", "--mproc-hang-report", "0")
    try:
        _wait(lambda: all((pytester.path / f"started-{n}").exists() for n in ("one", "two")), "start of both tests")
        proc.send_signal(signal.SIGQUIT)
        _wait(lambda: out.read_text().count("(SIGQUIT)") == 2, "report of both workers")
        (pytester.path / "release").touch()
        assert proc.wait(60) == 0, out.read_text()
    finally:
        proc.kill()
    text = out.read_text()
    for name in ("one", "two"):
        assert re.search(rf"test_b.py::test_{name} has been running for [\d.]+ s on worker gw\d .*\(SIGQUIT\)", text), text
        assert re.search(r"in _wait_for_release", text)
    assert "2 passed" in text


def test_ctrl_c_names_the_tests_it_cut_off(pytester):
    pytester.makepyfile(test_b=BLOCKING)
    proc, out = _start(pytester.path, "--cores", "2")
    try:
        _wait(lambda: all((pytester.path / f"started-{n}").exists() for n in ("one", "two")), "start of both tests")
        proc.send_signal(signal.SIGINT)
        assert proc.wait(60) == 2, out.read_text()
    finally:
        proc.kill()
    text = out.read_text()
    line = [l for l in text.splitlines() if "interrupted while running (no result)" in l]
    assert len(line) == 1 and "test_b.py::test_one" in line[0] and "test_b.py::test_two" in line[0], text
    assert text.count("(the run was interrupted)") == 2


def test_a_worker_node_sends_its_hang_report_to_the_main(pytester):
    pytester.makepyfile(test_h="import time\ndef test_sleeps_on_a_node():\n    time.sleep(2.5)\n")
    cluster = Cluster(pytester.path, "ef" * 16)
    try:
        main = cluster.main("--mproc-hang-report", "1")
        node = cluster.node("a", "--mproc-hang-report", "1", cores=1)
        assert main.wait() == 0, main.text()
        assert node.wait() == 0, node.text()
        text = main.text()
    finally:
        cluster.close()
    assert re.search(r"test_h.py::test_sleeps_on_a_node has been running for 1\.\d s on worker gw0 \(pid \d+\) "
                     r"on node \S+", text), text
    assert "in test_sleeps_on_a_node" in text


def test_sigquit_and_ctrl_c_on_a_multi_host_main_reach_the_nodes(pytester):
    """SIGQUIT on the main: every node reports its running tests with their stacks (here the
    main's own local node, reached through its bridge); Ctrl-C then names the tests the nodes
    were running, cut off without a result."""
    pytester.makepyfile(test_b=BLOCKING)
    proc, out = _start(pytester.path, "--as-main", "127.0.0.1", "--cores", "2", "--mproc-hang-report", "0")
    try:
        _wait(lambda: all((pytester.path / f"started-{n}").exists() for n in ("one", "two")), "start of both tests")
        proc.send_signal(signal.SIGQUIT)
        _wait(lambda: out.read_text().count("(SIGQUIT on the main)") == 2, "report of both workers of the node")
        proc.send_signal(signal.SIGINT)
        assert proc.wait(60) == 2, out.read_text()
    finally:
        proc.kill()
    text = out.read_text()
    for name in ("one", "two"):
        assert re.search(rf"test_b.py::test_{name} has been running for [\d.]+ s on worker gw\d \(pid \d+\) "
                         rf"on node \S+:main \(SIGQUIT on the main\)", text), text
    assert re.search(r"in _wait_for_release", text)
    line = [l for l in text.splitlines() if "interrupted while running (no result)" in l]
    assert len(line) == 1 and "test_b.py::test_one" in line[0] and "test_b.py::test_two" in line[0], text
