"""A worker that dies mid-test: that test fails naming the exit code or signal (with the worker's
stderr tail), the worker is replaced, every other test still runs exactly once, no hang."""


import pytest

CRASHERS = {
    "exit": "os._exit(3)",
    "segv": "import ctypes; ctypes.string_at(0)",
    "kill": "os.kill(os.getpid(), signal.SIGKILL)",
    "abort": "os.abort()",
}


@pytest.mark.parametrize("kind", sorted(CRASHERS))
def test_crash_is_reported_and_run_completes(run, pytester, ledger, kind):
    pytester.makepyfile(
        f"""
        import os, signal, pytest

        @pytest.mark.parametrize("n", range(15))
        def test_before(n): pass

        def test_crash():
            {CRASHERS[kind]}

        @pytest.mark.parametrize("n", range(15))
        def test_after(n): pass
        """
    )
    result = run("--cores", "2", "-rf")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.assert_outcomes(passed=30, failed=1)
    out = result.stdout.str()
    expected = {
        "exit": "exited with code 3",
        "segv": "killed by SIGSEGV",
        "kill": "killed by SIGKILL",
        "abort": "killed by SIGABRT",
    }[kind]
    assert f"crashed while running this test: {expected}" in out
    assert "FAILED test_crash_is_reported_and_run_completes.py::test_crash" in out
    counts = ledger.counts()
    assert len(counts) == 31 and set(counts.values()) == {1}


def test_segfault_report_has_faulthandler_traceback(run, pytester):
    pytester.makepyfile(
        """
        def test_segv():
            import ctypes
            ctypes.string_at(0)
        """
    )
    result = run("--cores", "2")
    out = result.stdout.str()
    assert "Fatal Python error: Segmentation fault" in out
    assert "in test_segv" in out


def test_every_worker_crashing_repeatedly_still_finishes(run, pytester, ledger):
    pytester.makepyfile(
        """
        import os, pytest
        @pytest.mark.parametrize("n", range(12))
        def test_die(n):
            if n % 2 == 0:
                os._exit(1)
        """
    )
    result = run("--cores", "2")
    result.assert_outcomes(passed=6, failed=6)
    assert set(ledger.counts().values()) == {1}


def test_crash_in_module_fixture_teardown_is_attributed(run, pytester):
    pytester.makepyfile(
        """
        import os, pytest
        @pytest.fixture(scope="module")
        def res():
            yield
            os._exit(9)
        def test_uses(res): pass
        """
    )
    result = run("--cores", "1")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    assert "exited with code 9" in result.stdout.str()


def test_fork_server_death_ends_run_with_clear_error(run, pytester):
    pytester.makepyfile(
        """
        import os, signal, time, pytest
        def test_kill_fork_server():
            os.kill(os.getppid(), signal.SIGKILL)  # a worker's parent is the fork server
            time.sleep(60)
        @pytest.mark.parametrize("n", range(5))
        def test_other(n):
            time.sleep(60)
        """
    )
    result = run("--cores", "2", timeout=60)
    assert result.ret == pytest.ExitCode.INTERRUPTED
    out = result.stdout.str()
    assert "the fork server died (killed by SIGKILL (signal 9))" in out
    assert "tests have no result" in out


def test_workers_dying_outside_tests_end_the_run_clearly(run, pytester):
    pytester.makeconftest(
        """
        import os
        MAIN = os.getpid()
        # A library whose at-fork handler breaks: every worker (a grandchild of the main)
        # dies the moment it is forked, before it can run anything.
        os.register_at_fork(after_in_child=lambda: os.getppid() != MAIN and os._exit(7))
        """
    )
    pytester.makepyfile("def test_a(): pass\ndef test_b(): pass")
    result = run("--cores", "2", timeout=60)
    assert result.ret == pytest.ExitCode.INTERRUPTED
    assert "workers keep dying outside any test" in result.stdout.str()
