"""The original documentation's names and spellings work as written there."""

from __future__ import annotations

import pytest


def test_spec_usage_of_global_fixture_and_data_module(run, pytester, ledger):
    pytester.makeconftest(
        """
        import os
        import pytest
        import pytest_mproc

        @pytest_mproc.fixtures.global_fixture(host="127.0.0.1", port=None)
        def shared():
            return {"pid": os.getpid()}

        @pytest_mproc.fixtures.node_fixture(autouse=True)
        def per_node(shared):
            return shared["pid"]

        @pytest.fixture(autouse=True)
        def _ledger(request):
            with open(os.environ["LEDGER"], "a") as f:
                f.write(f"{request.node.nodeid} {os.getpid()}\\n")
        """
    )
    pytester.makepyfile(
        """
        import pytest_mproc
        from pytest_mproc.data import GroupTag, TestExecutionConstraint

        GROUP = GroupTag("g", priority=pytest_mproc.DEFAULT_PRIORITY - 1,
                         restrict_to=TestExecutionConstraint.SINGLE_PROCESS)

        @pytest_mproc.group(GROUP)
        def test_a(shared):
            assert shared["pid"]

        @pytest_mproc.group("named", restrict_to=pytest_mproc.TestExecutionConstraint.SINGLE_PROCESS, priority=3)
        def test_b():
            pass

        @pytest_mproc.group("named", restrict_to=pytest_mproc.TestExecutionConstraint.SINGLE_PROCESS, priority=3)
        def test_c():
            pass
        """
    )
    for args in ((), ("--cores", "2")):
        run(*args).assert_outcomes(passed=3)
    rows = ledger.entries()
    pid_of = {n: p for n, p in rows[3:]}
    assert pid_of["test_spec_usage_of_global_fixture_and_data_module.py::test_b"] == \
        pid_of["test_spec_usage_of_global_fixture_and_data_module.py::test_c"], "one group, one worker"


def test_diable_mproc_spelling_runs_serially(run, pytester, ledger):
    pytester.makepyfile("def test_a(): pass\ndef test_b(): pass")
    run("--cores", "2", "--diable-mproc", "True").assert_outcomes(passed=2)
    assert len(ledger.pids()) == 1


def test_ptmproc_verbse_spelling_turns_on_verbose(run, pytester, monkeypatch):
    monkeypatch.setenv("PTMPROC_VERBSE", "1")
    pytester.makepyfile("def test_a(): pass")
    result = run("--cores", "2")
    assert "fork server pid" in result.stderr.str()


@pytest.mark.parametrize("cores", [(), ("--cores", "2")], ids=["serial", "cores"])
@pytest.mark.parametrize("kind,kwargs,message", [
    ("global_fixture", "params=[1, 2]", "cannot be parametrized"),
    ("node_fixture", "params=[1, 2]", "cannot be parametrized"),
    ("global_fixture", "scope='module'", "has its own scope"),
])
def test_misdeclared_fixtures_are_usage_errors_with_and_without_cores(run, pytester, cores, kind, kwargs, message):
    pytester.makeconftest(f"import pytest_mproc\n@pytest_mproc.fixtures.{kind}({kwargs})\ndef f():\n    return 1\n")
    pytester.makepyfile("def test_a(f): pass")
    result = run(*cores)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert message in result.stderr.str()
    assert "Traceback" not in result.stderr.str()
