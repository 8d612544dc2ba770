"""-x / --maxfail: once reached no new test starts anywhere, running ones finish, and the summary
says how many tests did not run."""

import re

import pytest

SUITE = """
import time, pytest

def test_fail_first():
    assert 0

@pytest.mark.parametrize("n", range(40))
def test_slow(n):
    time.sleep(0.05)
"""


def test_exitfirst_stops_everywhere(run, pytester, ledger):
    pytester.makepyfile(SUITE)
    result = run("--cores", "2", "-x")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    outcomes = result.parseoutcomes()
    assert outcomes["failed"] == 1
    started = sum(ledger.counts().values())
    # The failing test, plus at most what the other worker had already started.
    assert started <= 3
    assert outcomes.get("passed", 0) == started - 1
    out = result.stdout.str()
    assert "stopping after 1 failures" in out
    m = re.search(r"pytest-mproc: (\d+) tests not run", out)
    assert m and int(m.group(1)) == 41 - started


def test_maxfail_counts_failures_across_workers(run, pytester, ledger):
    pytester.makepyfile(
        """
        import pytest, time
        @pytest.mark.parametrize("n", range(60))
        def test_n(n):
            time.sleep(0.01)
            assert n % 4 != 0
        """
    )
    result = run("--cores", "2", "--maxfail=3")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    outcomes = result.parseoutcomes()
    # Both workers may each finish the test they were running when the third failure came.
    assert 3 <= outcomes["failed"] <= 4
    assert sum(ledger.counts().values()) < 60
    assert "stopping after" in result.stdout.str()
