"""Groups, priorities and duration history."""

import pytest

LOG_HELPER = """
import os, time
def rec(name):
    with open(os.environ["GLOG"], "a") as f:
        f.write(f"{name} {os.getpid()} {time.monotonic()} {time.monotonic()}\\n")
def rec_span(name, secs):
    start = time.monotonic()
    time.sleep(secs)
    with open(os.environ["GLOG"], "a") as f:
        f.write(f"{name} {os.getpid()} {start} {time.monotonic()}\\n")
"""


@pytest.fixture
def glog(event_log):
    rows = event_log("GLOG", "glogger", LOG_HELPER)
    return lambda: [(n, int(p), float(s), float(e)) for n, p, s, e in rows()]


def test_group_is_one_atomic_unit_in_priority_order(run, pytester, glog):
    pytester.makepyfile(
        test_g="""
        import pytest, pytest_mproc
        from glogger import rec_span

        @pytest_mproc.group("db")
        @pytest_mproc.priority(3)
        def test_db_c(): rec_span("db_c", 0.03)

        @pytest_mproc.group("db")
        @pytest_mproc.priority(1)
        def test_db_a(): rec_span("db_a", 0.03)

        @pytest_mproc.group("db")
        @pytest_mproc.priority(2)
        def test_db_b(): rec_span("db_b", 0.03)

        @pytest.mark.parametrize("n", range(20))
        def test_free(n): rec_span(f"free{n}", 0.01)
        """
    )
    result = run("--cores", "2")
    result.assert_outcomes(passed=23)
    rows = glog()
    db = [r for r in rows if r[0].startswith("db_")]
    assert [r[0] for r in db] == ["db_a", "db_b", "db_c"]  # priority order inside the group
    assert len({r[1] for r in db}) == 1  # one process
    pid = db[0][1]
    start, end = db[0][2], db[-1][3]
    # Never interleaved with other tests on that worker.
    assert not [r for r in rows if r[1] == pid and not r[0].startswith("db_") and start < r[2] < end]


def test_class_group_and_class_priority(run, pytester, glog):
    pytester.makepyfile(
        test_c="""
        import pytest_mproc
        from pytest_mproc import GroupTag
        from glogger import rec

        @pytest_mproc.group(GroupTag("cls", priority=1))
        @pytest_mproc.priority(5)
        class TestGrouped:
            def test_m5(self): rec("m5")
            @pytest_mproc.priority(0)
            def test_m0(self): rec("m0")
            def test_m5b(self): rec("m5b")

        def test_late(): rec("late")
        """
    )
    run("--cores", "1").assert_outcomes(passed=4)
    names = [r[0] for r in glog()]
    # GroupTag priority 1 puts the whole class before the default-priority test; inside, the
    # method's own priority (0) beats the class's (5); equal ones keep collection order.
    assert names == ["m0", "m5", "m5b", "late"]
    assert len({r[1] for r in glog()[:3]}) == 1


def test_priorities_order_top_level_units(run, pytester, glog):
    pytester.makepyfile(
        test_p="""
        import pytest, pytest_mproc
        from glogger import rec

        def test_default(): rec("default")
        @pytest_mproc.priority(pytest_mproc.DEFAULT_PRIORITY - 2)
        def test_early(): rec("early")
        @pytest_mproc.priority(pytest_mproc.DEFAULT_PRIORITY + 5)
        def test_late(): rec("late")
        @pytest.mark.mproc_priority(1)
        def test_marker_form(): rec("marker")
        """
    )
    run("--cores", "1").assert_outcomes(passed=4)
    assert [r[0] for r in glog()] == ["marker", "early", "default", "late"]


def test_marker_form_group_is_registered_and_groups(run, pytester, glog):
    pytester.makepyfile(
        test_m="""
        import pytest
        from glogger import rec

        @pytest.mark.mproc_group("mk", priority=0)
        def test_a(): rec("a")
        @pytest.mark.mproc_group("mk", priority=0)
        def test_b(): rec("b")
        def test_c(): rec("c")
        """
    )
    result = run("--cores", "2", "-W", "error::pytest.PytestUnknownMarkWarning", "--strict-markers")
    result.assert_outcomes(passed=3)
    rows = {r[0]: r[1] for r in glog()}
    assert rows["a"] == rows["b"]


def test_single_node_group_spreads_over_workers_in_group_priority(run, pytester, glog):
    pytester.makepyfile(
        test_sn="""
        import pytest, pytest_mproc
        from pytest_mproc import GroupTag, TestExecutionConstraint
        from glogger import rec_span

        SN = GroupTag("sn", priority=0, restrict_to=TestExecutionConstraint.SINGLE_NODE)

        @pytest.mark.parametrize("n", range(6))
        def test_free(n): rec_span(f"free{n}", 0.02)

        @pytest_mproc.group(SN)
        @pytest.mark.parametrize("n", range(6))
        def test_sn(n): rec_span(f"sn{n}", 0.05)
        """
    )
    run("--cores", "2").assert_outcomes(passed=12)
    rows = glog()
    sn = [r for r in rows if r[0].startswith("sn")]
    free = [r for r in rows if r[0].startswith("free")]
    assert len({r[1] for r in sn}) == 2  # spread over the node's workers
    # The group's priority 0 schedules its tests before the default-priority ones.
    assert min(r[2] for r in free) >= sorted(r[2] for r in sn)[1]


def test_conflicting_group_definitions_are_a_usage_error(run, pytester):
    pytester.makepyfile(
        test_x="""
        import pytest_mproc
        from pytest_mproc import GroupTag

        @pytest_mproc.group(GroupTag("g", priority=1))
        def test_a(): pass
        @pytest_mproc.group(GroupTag("g", priority=2))
        def test_b(): pass
        """
    )
    result = run("--cores", "2")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    err = result.stderr.str()
    assert "group 'g' is defined twice" in err
    assert "test_x.py::test_a" in err and "test_x.py::test_b" in err
    assert "Traceback" not in err


def test_string_group_on_function_and_constraint_not_collected(run, pytester):
    pytester.makepyfile(
        test_s="""
        import pytest_mproc
        from pytest_mproc import TestExecutionConstraint, GroupTag

        @pytest_mproc.group("plain-string")
        def test_a(): pass
        """
    )
    result = run("--cores", "2")
    result.assert_outcomes(passed=1)
    assert "TestExecutionConstraint" not in result.stdout.str()


def test_history_runs_long_tests_first(pytester, glog):
    pytester.makepyfile(
        test_h="""
        import pytest
        from glogger import rec_span

        @pytest.mark.parametrize("n", range(10))
        def test_short(n): rec_span(f"short{n}", 0.001)

        @pytest.mark.parametrize("n", range(2))
        def test_long(n): rec_span(f"long{n}", 0.3)
        """
    )
    first = pytester.runpytest_subprocess("--cores", "1")
    first.assert_outcomes(passed=12)
    assert [r[0] for r in glog()][:2] == ["short0", "short1"]  # collection order without history
    (pytester.path / "glog.txt").unlink()
    second = pytester.runpytest_subprocess("--cores", "1")
    second.assert_outcomes(passed=12)
    assert sorted(r[0] for r in glog()[:2]) == ["long0", "long1"]  # longest first
    (pytester.path / "glog.txt").unlink()
    third = pytester.runpytest_subprocess("--cores", "1", "--mproc-no-history")
    third.assert_outcomes(passed=12)
    assert [r[0] for r in glog()][:2] == ["short0", "short1"]


def test_history_holds_each_tests_whole_duration(pytester):
    """The history a `--cores` run saves gives each test the sum of its phases' durations, as
    junit XML (pytest's own, total durations) reports them: plain passed tests, a failure, a skip
    and a setup error alike."""
    import json
    import xml.etree.ElementTree as ET

    pytester.makepyfile(test_d="""
        import time, pytest

        @pytest.fixture
        def slow_setup():
            time.sleep(0.02)
            yield
            time.sleep(0.01)

        @pytest.fixture
        def broken():
            time.sleep(0.01)
            raise RuntimeError("no")

        @pytest.mark.parametrize("n", range(6))
        def test_plain(n, slow_setup): time.sleep(0.01 * n)
        def test_fails(slow_setup): assert False
        def test_skips(): pytest.skip("no")
        def test_errors(broken): pass
    """)
    result = pytester.runpytest_subprocess("--cores", "2", "--junitxml=out.xml", "-o", "junit_family=xunit1")
    result.assert_outcomes(passed=6, failed=1, skipped=1, errors=1)
    saved = json.loads((pytester.path / ".pytest_cache" / "v" / "pytest_mproc" / "durations").read_text())
    junit = {f"{case.get('file')}::{case.get('name')}": float(case.get("time"))
             for case in ET.parse(pytester.path / "out.xml").iter("testcase")}
    assert sorted(saved) == sorted(junit) and len(saved) == 9, (saved, junit)
    for nodeid, seconds in junit.items():
        assert saved[nodeid] == pytest.approx(seconds, abs=0.0015), nodeid
    assert saved["test_d.py::test_plain[5]"] > 0.07  # setup + call + teardown, not one phase


def test_no_history_without_cacheprovider(pytester, glog):
    pytester.makepyfile(
        test_h="""
        import pytest
        from glogger import rec_span
        def test_short(): rec_span("short", 0.001)
        def test_long(): rec_span("long", 0.2)
        """
    )
    for _ in range(2):
        pytester.runpytest_subprocess("--cores", "1", "-p", "no:cacheprovider").assert_outcomes(passed=2)
    assert [r[0] for r in glog()] == ["short", "long", "short", "long"]


def test_crash_inside_group_requeues_rest_of_group(run, pytester, glog):
    pytester.makepyfile(
        test_gc="""
        import os, pytest_mproc
        from glogger import rec

        @pytest_mproc.group("g")
        def test_1(): rec("g1")
        @pytest_mproc.group("g")
        def test_2(): rec("g2"); os._exit(5)
        @pytest_mproc.group("g")
        def test_3(): rec("g3")
        @pytest_mproc.group("g")
        def test_4(): rec("g4")
        """
    )
    result = run("--cores", "2")
    result.assert_outcomes(passed=3, failed=1)
    rows = glog()
    assert [r[0] for r in rows] == ["g1", "g2", "g3", "g4"]
    # The rest of the group ran together, in a fresh worker.
    assert rows[2][1] == rows[3][1] != rows[1][1]


def test_failing_grouped_test_does_not_stop_its_group(run, pytester, glog):
    pytester.makepyfile(
        test_gf="""
        import pytest_mproc
        from glogger import rec

        @pytest_mproc.group("g")
        def test_1(): rec("g1"); assert False
        @pytest_mproc.group("g")
        def test_2(): rec("g2")
        @pytest_mproc.group("g")
        def test_3(): rec("g3")
        """
    )
    result = run("--cores", "2")
    result.assert_outcomes(passed=2, failed=1)
    assert [r[0] for r in glog()] == ["g1", "g2", "g3"]


def test_exitfirst_stops_inside_a_group(run, pytester, glog):
    pytester.makepyfile(
        test_gx="""
        import pytest_mproc
        from glogger import rec

        @pytest_mproc.group("g")
        def test_1(): rec("g1"); assert False
        @pytest_mproc.group("g")
        def test_2(): rec("g2")
        """
    )
    result = run("--cores", "2", "-x")
    result.assert_outcomes(failed=1)
    assert [r[0] for r in glog()] == ["g1"]
    assert "1 test not run" in result.stdout.str()
