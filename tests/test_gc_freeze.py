"""gc_freeze.py: the collected tree is frozen before the workers fork (they inherit it frozen),
the main freezes the reports it keeps as it replays them, and the frozen objects are released
when pytest.main() was called by other code, but left frozen when the `pytest` command ends."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

TESTS = 1500  # more than gc_freeze.EVERY replayed tests

CONFTEST = """
    import atexit, gc, json, os

    MAIN = os.getpid()
    OUT = os.environ["FREEZE_OUT"]

    def _note(key):
        with open(os.path.join(OUT, f"{key}.{os.getpid()}"), "w") as f:
            f.write(str(gc.get_freeze_count()))

    def pytest_sessionfinish(session):
        if os.getpid() == MAIN:
            _note("main_sessionfinish")

    def _at_exit():
        if os.getpid() == MAIN:
            _note("main_exit")

    atexit.register(_at_exit)
"""

SUITE = """
    import os, pytest
    from conftest import _note

    @pytest.mark.parametrize("n", range(%d))
    def test_n(n):
        if n == 0:
            _note("worker")
""" % TESTS


def _counts(path) -> dict[str, int]:
    out: dict[str, int] = {}
    for f in path.iterdir():
        key = f.name.split(".")[0]
        out[key] = int(f.read_text())
    return out


@pytest.fixture
def suite(pytester, monkeypatch):
    out = pytester.path / "out"
    out.mkdir()
    monkeypatch.setenv("FREEZE_OUT", str(out))
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_many=SUITE)
    return out


def test_collected_tree_and_replayed_reports_are_frozen(pytester, suite):
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-q", "--cores", "2")
    result.assert_outcomes(passed=TESTS)
    counts = _counts(suite)
    # The worker forked after the collected tree was frozen: it sees it frozen.
    assert counts["worker"] > TESTS, counts
    # The main froze again as it replayed (at least EVERY tests' three reports each).
    assert counts["main_sessionfinish"] >= counts["worker"] + 3 * 1024, counts
    # The `pytest` command ends with the session: nothing was unfrozen for the shutdown.
    # (objects freed since by their reference count leave the frozen set: not equal, but near)
    assert counts["main_exit"] > counts["worker"], counts


def test_switched_off(pytester, suite, monkeypatch):
    monkeypatch.setenv("PTMPROC_NO_GC_FREEZE", "1")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-q", "--cores", "2")
    result.assert_outcomes(passed=TESTS)
    assert _counts(suite) == {"worker": 0, "main_sessionfinish": 0, "main_exit": 0}


def test_released_after_pytest_main_called_by_code(pytester, suite):
    script = pytester.path / "run_twice.py"
    script.write_text(textwrap.dedent("""
        import gc, json, sys
        import pytest
        codes, frozen = [], []
        for _ in range(2):
            codes.append(int(pytest.main(["-p", "no:cacheprovider", "-q", "--cores", "2", "test_many.py"])))
            frozen.append(gc.get_freeze_count())
        print("RESULT " + json.dumps([codes, frozen]))
    """))
    proc = subprocess.run([sys.executable, str(script)], cwd=pytester.path, capture_output=True, text=True,
                          timeout=300)
    line = next(l for l in proc.stdout.splitlines() if l.startswith("RESULT "))
    codes, frozen = json.loads(line[len("RESULT "):])
    assert codes == [0, 0]
    # Frozen during each session (the worker saw it), released when pytest.main returned.
    assert frozen == [0, 0]
    assert _counts(suite)["worker"] > TESTS
