"""A --cores run gives exactly the serial run's outcomes, output, junit and exit code, and runs
every test exactly once."""

import re

import pytest

from conftest import junit_cases, outcome_lines

SUITE = {
    "test_mixed": """
        import pytest, warnings

        @pytest.fixture
        def broken_setup():
            raise RuntimeError("setup boom")

        @pytest.fixture
        def broken_teardown():
            yield
            raise RuntimeError("teardown boom")

        def test_pass(): pass
        def test_fail(): assert 1 + 1 == 3
        def test_setup_error(broken_setup): pass
        def test_teardown_error(broken_teardown): pass
        @pytest.mark.skip(reason="nope")
        def test_skip(): pass
        @pytest.mark.skipif(condition=True, reason="cond")
        def test_skipif(): pass
        @pytest.mark.xfail(reason="known")
        def test_xfail(): assert 0
        @pytest.mark.xfail(reason="fixed?")
        def test_xpass(): pass
        @pytest.mark.xfail(strict=True)
        def test_xpass_strict(): pass
        def test_warns():
            warnings.warn("careful now")
        def test_output():
            print("some stdout")
            import sys; sys.stderr.write("some stderr\\n")
            assert False, "with output"
        @pytest.mark.parametrize("n", range(30))
        def test_param(n): assert n % 7 != 6
        class TestCls:
            def test_method(self): pass
            def test_method_fail(self): raise ValueError("in class")
    """,
    "test_other": """
        import warnings
        warnings.warn("imported with a warning")  # recorded at collection, in the main only

        def test_other_a(): pass
        def test_other_b(): pass
    """,
}


def test_outcomes_match_serial(run, pytester, ledger):
    pytester.makepyfile(**SUITE)
    serial = run("-rA", "--junitxml=serial.xml")
    ledger_serial = ledger.counts()
    (pytester.path / "ledger.txt").unlink()
    par = run("-rA", "--junitxml=par.xml", "--cores", "2")
    assert par.ret == serial.ret == pytest.ExitCode.TESTS_FAILED
    assert par.parseoutcomes() == serial.parseoutcomes()
    assert outcome_lines(par) == outcome_lines(serial)
    assert junit_cases(pytester.path / "par.xml") == junit_cases(pytester.path / "serial.xml")
    # In the same order (collection order, not the order tests finished in): junit test cases,
    # the FAILURES/ERRORS sections and the short test summary.
    assert list(junit_cases(pytester.path / "par.xml")) == list(junit_cases(pytester.path / "serial.xml"))

    def in_order(result):
        return [line for line in result.outlines
                if re.match(r"^(_{3,} .* _{3,}|(PASSED|FAILED|ERROR|SKIPPED|XFAIL|XPASS) \S+)", line)]

    assert in_order(par) == in_order(serial)
    # Exactly once each (the ledger fixture runs once per test that reaches setup).
    assert ledger.counts() == ledger_serial
    assert set(ledger.counts().values()) == {1}
    # Tracebacks, captured output and the warnings summary reach the terminal.
    out = par.stdout.str()
    assert "def test_fail(): assert 1 + 1 == 3" in out  # the traceback
    assert "some stdout" in out and "some stderr" in out
    assert "careful now" in out
    assert "RuntimeError: teardown boom" in out
    # The collection-time warning once, as serially (not again from each worker).
    assert "imported with a warning" in out
    assert par.stdout.lines.count("test_other.py:2") == serial.stdout.lines.count("test_other.py:2") == 1


def test_all_pass_exit_zero_and_uses_several_workers(run, pytester, ledger):
    pytester.makepyfile(
        test_many="""
        import pytest, time
        @pytest.mark.parametrize("n", range(40))
        def test_n(n): time.sleep(0.01)
        """
    )
    result = run("--cores", "2")
    assert result.ret == 0
    result.assert_outcomes(passed=40)
    assert len(ledger.pids()) == 2


def test_no_tests_collected_exit_code(run, pytester):
    pytester.makepyfile("x = 1")
    result = run("--cores", "2")
    assert result.ret == pytest.ExitCode.NO_TESTS_COLLECTED


def test_keyword_and_marker_selection_apply_once(run, pytester, ledger):
    pytester.makepyfile(
        """
        import pytest
        @pytest.mark.slow
        def test_a_slow(): pass
        def test_a_fast(): pass
        def test_b_fast(): pass
        """
    )
    result = run("--cores", "2", "-k", "a_ and not b", "-m", "not slow")
    result.assert_outcomes(passed=1, deselected=2)
    assert list(ledger.counts()) == ["test_keyword_and_marker_selection_apply_once.py::test_a_fast"]


def test_durations_and_verbose_output(run, pytester):
    pytester.makepyfile("def test_a(): pass\ndef test_b(): pass")
    result = run("--cores", "2", "-v", "--durations=5")
    out = result.stdout.str()
    assert "test_a PASSED" in out and "test_b PASSED" in out
    assert "slowest 5 durations" in out


def test_last_failed_cache_works(pytester):
    pytester.makepyfile("def test_ok(): pass\ndef test_bad(): assert 0")
    first = pytester.runpytest_subprocess("--cores", "2")
    first.assert_outcomes(passed=1, failed=1)
    second = pytester.runpytest_subprocess("--cores", "2", "--lf")
    second.assert_outcomes(failed=1)
    assert "rerun previous 1 failure" in second.stdout.str()
    assert "collected 1 item" in second.stdout.str()


def test_collection_error_behaves_as_serial(run, pytester, ledger):
    pytester.makepyfile(test_good="def test_ok(): pass", test_broken="import nonexistent_module_xyz")
    serial = run()
    par = run("--cores", "2")
    assert par.ret == serial.ret == pytest.ExitCode.INTERRUPTED
    assert par.parseoutcomes() == serial.parseoutcomes()
    assert "nonexistent_module_xyz" in par.stdout.str()
    assert ledger.counts() == {}


def test_collect_only_starts_no_workers(run, pytester, monkeypatch):
    monkeypatch.setenv("PTMPROC_VERBOSE", "1")
    pytester.makepyfile("def test_a(): pass")
    result = run("--cores", "2", "--collect-only")
    assert result.ret == 0
    assert "test_a" in result.stdout.str()
    assert "fork server" not in result.stderr.str()


def test_output_under_s_reaches_terminal(run, pytester):
    pytester.makepyfile(
        """
        import sys
        def test_print():
            print("HELLO-FROM-WORKER-STDOUT")
            sys.stderr.write("HELLO-FROM-WORKER-STDERR\\n")
        """
    )
    result = run("--cores", "2", "-s")
    result.assert_outcomes(passed=1)
    assert "HELLO-FROM-WORKER-STDOUT" in result.stdout.str()
    assert "HELLO-FROM-WORKER-STDERR" in result.stderr.str()


def test_higher_scoped_fixtures_built_once_per_worker(run, pytester, tmp_path):
    marks = tmp_path / "setups"
    marks.mkdir()
    pytester.makepyfile(
        test_scopes=f"""
        import os, uuid, pytest
        MARKS = {str(marks)!r}

        def _mark(kind):
            open(os.path.join(MARKS, f"{{kind}}-{{os.getpid()}}-{{uuid.uuid4().hex}}"), "w").close()

        @pytest.fixture(scope="session")
        def sess():
            _mark("session")

        @pytest.fixture(scope="module")
        def mod():
            _mark("module")

        class TestC:
            @pytest.fixture(scope="class")
            def cls(self):
                _mark("class")

            @pytest.mark.parametrize("n", range(30))
            def test_c(self, n, sess, mod, cls):
                pass

        @pytest.mark.parametrize("n", range(30))
        def test_m(n, sess, mod):
            pass
        """
    )
    result = run("--cores", "2")
    result.assert_outcomes(passed=60)
    setups = [p.name.split("-") for p in marks.iterdir()]
    pids = {pid for _, pid, _ in setups}
    assert len(pids) == 2
    for kind in ("session", "module", "class"):
        per_pid = [sum(1 for k, p, _ in setups if k == kind and p == pid) for pid in pids]
        # At most once per worker: never rebuilt between consecutive tests.
        assert all(n <= 1 for n in per_pid), (kind, per_pid)


def test_failure_representations_pytest_serializes_as_text_come_back_whole(run, pytester):
    """A failed doctest's ReprFailDoctest travels as text in pytest's report serialization; the
    terminal would take the text's first line as the short-summary message (as under xdist:
    'FAILED m.py::m.add - 026 '). The main gets the object back and shows what a serial run
    shows."""
    pytester.makepyfile(
        doc='''
        def add(a, b):
            """
            >>> add(2, 2)
            5
            """
            return a + b

        def test_plain(): pass
        '''
    )
    pytester.makeconftest(
        """
        import os

        def pytest_runtest_logreport(report):
            # The main's reports carry no attribute of ours.
            if not os.environ.get("PTMPROC_WORKER") and any(k.startswith("$") for k in vars(report)):
                open("leaked.txt", "a").write(repr(sorted(vars(report))) + "\\n")
        """
    )
    serial = run("-rA", "--doctest-modules", "--junitxml=serial.xml")
    par = run("-rA", "--doctest-modules", "--junitxml=par.xml", "--cores", "2")
    summary = [line for line in serial.outlines if line.startswith("FAILED")]
    assert summary == ["FAILED doc.py::doc.add"]
    assert [line for line in par.outlines if line.startswith("FAILED")] == summary
    assert junit_cases(pytester.path / "par.xml") == junit_cases(pytester.path / "serial.xml")
    assert "Expected:" in par.stdout.str() and "Got:" in par.stdout.str()
    assert not (pytester.path / "leaked.txt").exists()


def test_testsuite_properties_recorded_in_workers_reach_the_junit_xml(run, pytester):
    pytester.makepyfile(
        """
        import pytest

        @pytest.fixture(scope="session", autouse=True)
        def build_info(record_testsuite_property):
            record_testsuite_property("build", "42")  # once per worker under --cores

        @pytest.mark.parametrize("n", range(8))
        def test_n(n): pass

        def test_records(record_testsuite_property):
            record_testsuite_property("from_test", "yes")
        """
    )
    import xml.etree.ElementTree as ET

    def suite_properties(name):
        suite = ET.parse(pytester.path / name).getroot().find("testsuite")
        return [(p.get("name"), p.get("value")) for p in suite.iter("property")]

    run("--junitxml=serial.xml").assert_outcomes(passed=9)
    run("--junitxml=par.xml", "--cores", "3").assert_outcomes(passed=9)
    assert sorted(suite_properties("par.xml")) == sorted(suite_properties("serial.xml")) == [
        ("build", "42"), ("from_test", "yes")]


@pytest.mark.parametrize("mode", ["--setup-plan", "--setup-only"])
def test_setup_plan_and_only_show_what_a_serial_run_shows(run, pytester, mode):
    pytester.makepyfile(
        """
        import pytest

        @pytest.fixture(scope="module")
        def mod():
            yield 1

        @pytest.fixture
        def fn(mod):
            return mod

        def test_a(fn): pass
        def test_b(mod): pass
        """
    )
    serial = run(mode)
    par = run(mode, "--cores", "2")

    def shown(result):
        lines = result.outlines
        start = next(i for i, line in enumerate(lines) if line.startswith("collected"))
        return [line for line in lines[start:-1]]  # without the timed last line

    assert "SETUP    M mod" in "\n".join(shown(serial))
    assert shown(par) == shown(serial)


SETUP_SHOW_SUITE = """
    import pytest

    @pytest.fixture(scope="session")
    def sess():
        yield 1

    @pytest.fixture(scope="module")
    def mod(sess):
        yield 1

    @pytest.fixture
    def fn(mod):
        return mod

    @pytest.fixture
    def boom():
        raise RuntimeError("no")

    @pytest.mark.parametrize("n", range(3))
    def test_a(fn, n): pass
    def test_b(mod): pass
    def test_fails(fn): assert False
    def test_errors(boom): pass
    def test_plain(): pass
"""


def _setup_show_lines(result) -> list[str]:
    """The run's lines from `collected` to the first section after the tests."""
    lines = result.outlines
    start = next((i + 1 for i, line in enumerate(lines) if "collected" in line), 0)  # -q: no header
    end = next(i for i, line in enumerate(lines) if i > start and line.startswith("====="))
    return [line for line in lines[start:end] if line.strip()]


@pytest.mark.parametrize("verbosity", ["-q", "-v"])
def test_setup_show_lines_as_serially(run, pytester, verbosity):
    """--setup-show's SETUP/TEARDOWN lines and each test's "(fixtures used: ...)" line come at
    the same points of the output as serially: identical with one worker; with several, every
    test's own lines once, and a wider-scoped fixture's once per worker that set it up."""
    pytester.makepyfile(test_show=SETUP_SHOW_SUITE)
    serial = _setup_show_lines(run("--setup-show", verbosity))
    assert "    SETUP    M mod (fixtures used: sess)" in serial, serial
    assert _setup_show_lines(run("--setup-show", verbosity, "--cores", "1")) == serial
    par = _setup_show_lines(run("--setup-show", verbosity, "--cores", "3"))
    calls = [line for line in par if line.startswith("        test_show.py::")]
    assert sorted(calls) == sorted(line for line in serial if line.startswith("        test_show.py::"))
    assert len(calls) == 6  # every test that reached its call
    function_scoped = [line for line in par if line.startswith("        SETUP") or line.startswith("        TEARDOWN")]
    assert sorted(function_scoped) == sorted(
        line for line in serial if line.startswith("        SETUP") or line.startswith("        TEARDOWN"))
    assert set(par) - set(serial) <= {line for line in par if line.startswith(("test_show.py", "."))}, par


def test_setup_show_lines_of_a_test_that_kills_its_worker_are_in_the_crash_report(run, pytester):
    """What --setup-show wrote before a test took its worker down cannot travel with a report:
    it is in the worker's stderr tail that the crash report shows."""
    pytester.makepyfile(test_dies="""
        import os, pytest

        @pytest.fixture
        def fix():
            return 1

        def test_dies(fix):
            os._exit(3)
    """)
    result = run("--setup-show", "--cores", "1")
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    assert "crashed while running this test" in out
    tail = out.split("last output of worker gw0 on stderr", 1)[1]
    assert "SETUP    F fix" in tail and "test_dies.py::test_dies (fixtures used: fix)" in tail, out


def test_subtest_failures_fail_their_test_only_as_serially(run, pytester):
    """pytest's `subtests` fixture fails the test that has a failed subtest; a unittest
    subTest failure is reported on its own and does not (pytest 9). Under --cores the main
    learns the worker's count instead of counting every failed subtest report itself."""
    pytester.makepyfile(
        """
        import unittest

        class TestU(unittest.TestCase):
            def test_sub(self):
                for i in range(3):
                    with self.subTest(i=i):
                        self.assertNotEqual(i, 1)

        def test_fixture_subtests(subtests):
            for i in range(3):
                with subtests.test(i=i):
                    assert i != 2
        """
        if pytest.version_tuple >= (9,) else
        """
        def test_placeholder(): pass
        """
    )
    serial = run("-rA")
    par = run("-rA", "--cores", "2")
    assert par.ret == serial.ret
    assert par.parseoutcomes() == serial.parseoutcomes()
    summary = lambda r: sorted(line for line in r.outlines if re.match(r"^(PASSED|FAILED|SUBFAILED)", line))
    assert summary(par) == summary(serial)
