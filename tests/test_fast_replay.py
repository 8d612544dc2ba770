"""The main's fast replay paths (plain_reports.py, direct_hooks.py) change nothing anyone can see:
terminal output (-q, -v, -rA, warnings summary, durations), junit XML and pytest's cache are
byte-identical to the full path's (PTMPROC_FULL_REPLAY=1) and match the serial run's; a
third-party plugin implementing pytest_runtest_logreport gets every report through pluggy."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ET

import pytest

SUITE = {
    "test_mixed.py": """
        import time, warnings, pytest

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
        @pytest.mark.xfail(reason="known")
        def test_xfail(): assert 0
        @pytest.mark.xfail(reason="fixed?")
        def test_xpass(): pass
        def test_warns():
            warnings.warn("careful now")
        def test_passes_with_output():
            print("said something")
        def test_output_and_fail():
            print("some stdout")
            assert False, "with output"
        def test_property(record_property):
            record_property("answer", 42)
        def test_marker_added(request):
            request.node.add_marker("late")
        def test_slow_1(): time.sleep(0.30)
        def test_slow_2(): time.sleep(0.20)
        def test_slow_3(): time.sleep(0.10)
        @pytest.mark.parametrize("n", range(40))
        def test_param(n): assert n % 13 != 12
        class TestCls:
            def test_method(self): pass
            def test_method_fail(self): raise ValueError("in class")
    """,
    "sub/test_other.py": """
        def test_other_a(): pass
        def test_other_b(): pass
    """,
    "pytest.ini": """
        [pytest]
        markers = late: added while the test runs
    """,
}

# Records, in the main only, every report it is given (a third-party reporting plugin).
SPY = """
    import os

    def pytest_runtest_logreport(report):
        if os.environ.get("PTMPROC_WORKER"):
            return
        with open(os.environ["SPY_OUT"], "a") as f:
            f.write(f"{report.nodeid} {report.when} {report.outcome}\\n")
"""

# The tests of SUITE that pass with nothing else to show (the compact form's tests): test_pass,
# test_slow_*, test_param but 12/25/38, test_method, sub/'s two.
PLAIN = 1 + 3 + (40 - 3) + 1 + 2


def _suite(path) -> None:
    for name, text in SUITE.items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_text(textwrap.dedent(text))


def _pytest(path, *args, full=False, spy=False) -> dict:
    env = dict(os.environ)
    env.pop("PTMPROC_FULL_REPLAY", None)
    env["PTMPROC_STATS_FILE"] = str(path / "stats.json")
    if full:
        env["PTMPROC_FULL_REPLAY"] = "1"
    extra = []
    if spy:
        (path / "logspy.py").write_text(textwrap.dedent(SPY))
        env["SPY_OUT"] = str(path / "spy.txt")
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(path), env.get("PYTHONPATH")]))
        extra = ["-p", "logspy"]
    proc = subprocess.run([sys.executable, "-m", "pytest", *extra, *args, "--junitxml=junit.xml"], cwd=path,
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == pytest.ExitCode.TESTS_FAILED, proc.stdout + proc.stderr
    stats = path / "stats.json"
    cache = path / ".pytest_cache" / "v" / "cache"
    return {
        "out": _normalized_output(proc.stdout, path),
        "junit": _normalized_output(_junit_without_times(path / "junit.xml"), path),
        "lastfailed": json.loads((cache / "lastfailed").read_text()),
        "nodeids": json.loads((cache / "nodeids").read_text()),
        "stats": json.loads(stats.read_text()) if stats.exists() else None,
        "spy": sorted((path / "spy.txt").read_text().splitlines()) if spy else None,
    }


def _normalized_output(text: str, path) -> str:
    # -v's per-worker summary is --cores' own addition (docs/seeing.md), its figures timing.
    text = re.sub(r"-+ pytest-mproc workers -+\n(gw.*\n)+", "", text)
    text = text.replace(str(path), "ROOT")
    text = re.sub(r"\d+\.\d+s", "T", text)  # run time, durations
    text = re.sub(r"0x[0-9a-f]+", "ADDR", text)  # object reprs in tracebacks
    return re.sub(r"\(\d+:\d\d:\d\d\)", "", text)


def _junit_without_times(path) -> str:
    root = ET.parse(path).getroot()
    for el in root.iter():
        for attr in ("time", "timestamp", "hostname"):
            el.attrib.pop(attr, None)
    return ET.tostring(root, encoding="unicode")


def _runs(tmp_path, args, spy=False) -> tuple[dict, dict, dict]:
    out = []
    for name, cores, full in (("serial", [], False), ("fast", ["--cores", "1"], False),
                              ("full", ["--cores", "1"], True)):
        d = tmp_path / name
        d.mkdir()
        _suite(d)
        out.append(_pytest(d, *args, *cores, full=full, spy=spy))
    return tuple(out)


def _parallel_part(out: str) -> str:
    """Output from the first test line on (the header differs: --cores shows its workers)."""
    return out[out.index("collected"):] if "collected" in out else out


@pytest.mark.parametrize("args", [("-q", "-rA", "--durations=3"), ("-v", "-rA", "--durations=3")],
                         ids=["q", "v"])
def test_fast_path_output_is_the_full_paths(tmp_path, args):
    serial, fast, full = _runs(tmp_path, args)
    # The fast paths were taken, and not with PTMPROC_FULL_REPLAY=1.
    assert fast["stats"]["plain_results"] == PLAIN
    assert full["stats"]["plain_results"] == 0
    assert fast["stats"]["replay_hooks"]["pytest_runtest_logreport"][1] == 0
    assert full["stats"]["replay_hooks"]["pytest_runtest_logreport"][0] == 0
    # Byte-identical to the full path (one worker: the same order) ...
    assert fast["out"] == full["out"]
    assert fast["junit"] == full["junit"]
    assert fast["lastfailed"] == full["lastfailed"] and fast["nodeids"] == full["nodeids"]
    # ... and what the serial run shows.
    assert _parallel_part(fast["out"]) == _parallel_part(serial["out"])
    assert fast["junit"] == serial["junit"]
    assert fast["lastfailed"] == serial["lastfailed"] and fast["nodeids"] == serial["nodeids"]
    assert "careful now" in fast["out"] and "said something" in fast["out"]
    assert re.search(r"T call +test_mixed.py::test_slow_1\nT call +test_mixed.py::test_slow_2", fast["out"])


def test_third_party_logreport_plugin_forces_dispatch_and_sees_every_report(tmp_path):
    serial, fast, full = _runs(tmp_path, ("-q", "-rA"), spy=True)
    # Through pluggy, every report of every test, as in the serial run.
    assert fast["stats"]["replay_hooks"]["pytest_runtest_logreport"][0] == 0
    assert fast["stats"]["replay_hooks"]["pytest_runtest_logreport"][1] == len(serial["spy"])
    assert fast["stats"]["plain_results"] == PLAIN  # reports still travel compactly
    assert fast["spy"] == serial["spy"] == full["spy"]
    assert len(serial["spy"]) == 3 * 59 - 2  # a skipped and a failed setup: no call report
    # Hooks nobody else implements stay direct.
    assert fast["stats"]["replay_hooks"]["pytest_runtest_logstart"][1] == 0
    assert fast["out"] == full["out"]
    assert _parallel_part(fast["out"]) == _parallel_part(serial["out"])
    assert fast["junit"] == full["junit"] == serial["junit"]


def test_plugin_added_mid_run_is_dispatched_to(tmp_path):
    """A plugin registered while results are being replayed gets the rest of the reports."""
    _suite(tmp_path)
    (tmp_path / "conftest.py").write_text(textwrap.dedent("""
        import os

        class Late:
            def pytest_runtest_logreport(self, report):
                with open(os.environ["LATE_OUT"], "a") as f:
                    f.write(report.nodeid + " " + report.when + "\\n")

        def pytest_runtest_logfinish(nodeid):
            if os.environ.get("PTMPROC_WORKER"):
                return
            with open(os.environ["ALL_OUT"], "a") as f:
                f.write(nodeid + "\\n")
            if nodeid.endswith("test_param[19]"):
                config = pytest_runtest_logfinish.config
                config.pluginmanager.register(Late(), "late")

        def pytest_configure(config):
            pytest_runtest_logfinish.config = config
    """))
    env = dict(os.environ, LATE_OUT=str(tmp_path / "late.txt"), ALL_OUT=str(tmp_path / "all.txt"),
               PTMPROC_STATS_FILE=str(tmp_path / "s.json"))
    env.pop("PTMPROC_FULL_REPLAY", None)
    subprocess.run([sys.executable, "-m", "pytest", "-q", "--cores", "1", "-p", "no:cacheprovider"], cwd=tmp_path,
                   env=env, capture_output=True, timeout=120)
    late = (tmp_path / "late.txt").read_text().splitlines()
    finished = (tmp_path / "all.txt").read_text().splitlines()
    after = finished[finished.index("test_mixed.py::test_param[19]") + 1:]
    assert len(after) >= 20
    # Every report of every test finished after test_param[19] (all of them passed or failed
    # in the call: three reports each).
    assert [line.split()[0] for line in late] == [n for n in after for _ in range(3)]
    assert [line.split()[1] for line in late] == ["setup", "call", "teardown"] * len(after)
    stats = json.loads((tmp_path / "s.json").read_text())
    direct, dispatched = stats["replay_hooks"]["pytest_runtest_logreport"]
    assert direct > 0 and dispatched == len(late)


# Checks, in a serial run, that every plain passed test's reports rebuilt from the compact form
# equal pytest's own: same attributes, same values, same order.
REBUILD_CHECK = """
    import os
    import pytest
    from pytest_mproc import plain_reports
    from pytest_mproc.timeline import Timeline

    class Check:
        def __init__(self):
            self.reports = {}
            self.warned = set()

        def pytest_runtest_logreport(self, report):
            self.reports.setdefault(report.nodeid, []).append(report)

        def pytest_warning_recorded(self, nodeid):
            self.warned.add(nodeid)  # recorded after the test's logfinish

        def pytest_sessionfinish(self, session):
            checked, mismatches = 0, []
            for item in session.items:
                reports = self.reports.get(item.nodeid, [])
                plain = plain_reports.compact(reports, ["w"] if item.nodeid in self.warned else [])
                if plain is None:
                    continue
                rebuilt = plain_reports.build(item, reports[0].location, *plain)
                for mine, theirs in zip(rebuilt, reports):
                    if type(mine) is not type(theirs) or list(mine.__dict__.items()) != list(theirs.__dict__.items()):
                        mismatches.append((item.nodeid, mine.__dict__, theirs.__dict__))
                # The timeline's bar from the compact times is the one the reports give.
                from_reports, from_times = Timeline(session.config), Timeline(session.config)
                from_reports.test(item.nodeid, "", "gw0", reports)
                from_times.passed(item.nodeid, "", "gw0", plain[1])
                bars = [list(t.lanes.values())[0].tests for t in (from_reports, from_times)]
                if bars[0] != bars[1]:
                    mismatches.append((item.nodeid, "timeline", bars))
                checked += 1
            with open(os.environ["CHECK_OUT"], "w") as f:
                f.write(f"{checked}\\n")
                for m in mismatches:
                    f.write(repr(m) + "\\n")

    def pytest_configure(config):
        config.pluginmanager.register(Check(), "rebuild-check")
"""


def test_rebuilt_reports_equal_pytests_own(tmp_path):
    _suite(tmp_path)
    (tmp_path / "conftest.py").write_text(textwrap.dedent(REBUILD_CHECK))
    env = dict(os.environ, CHECK_OUT=str(tmp_path / "check.txt"))
    subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"], cwd=tmp_path, env=env,
                   capture_output=True, timeout=120)
    checked, *mismatches = (tmp_path / "check.txt").read_text().splitlines()
    assert mismatches == []
    assert int(checked) == PLAIN


# A conftest the main's pytest_report_teststatus reuse must not get in the way of.
STATUS_PLUGINS = {
    # Its own status for plain passed tests: pytest_report_teststatus goes through pluggy.
    "custom_status": """
        def pytest_report_teststatus(report):
            if report.when == "call" and report.passed and "test_param" in report.nodeid:
                return "passed", "p", "PARAM-PASSED"
    """,
    # Changes a plain report in the main before the terminal reporter asks for its status.
    "mutating_logreport": """
        import os
        import pytest

        @pytest.hookimpl(tryfirst=True)
        def pytest_runtest_logreport(report):
            if not os.environ.get("PTMPROC_WORKER") and report.when == "call" and report.nodeid.endswith("test_pass"):
                report.outcome = "failed"
                report.longrepr = "failed by a plugin"
    """,
}


def test_plain_tests_reuse_pytests_own_status(tmp_path):
    """Plain passed tests get the status pytest's own pytest_report_teststatus gave the first
    plain report of the same phase; the output stays the serial run's."""
    serial, fast, full = _runs(tmp_path, ("-q", "-rA"))
    assert fast["stats"]["teststatus_reused"] == 3 * (PLAIN - 1)
    assert full["stats"]["teststatus_reused"] == 0
    assert _parallel_part(fast["out"]) == _parallel_part(serial["out"]) == _parallel_part(full["out"])


@pytest.mark.parametrize("plugin", sorted(STATUS_PLUGINS))
def test_no_status_reuse_past_a_third_party_plugin(tmp_path, plugin):
    for name in ("serial", "fast"):
        (tmp_path / name).mkdir()
        _suite(tmp_path / name)
        (tmp_path / name / "conftest.py").write_text(textwrap.dedent(STATUS_PLUGINS[plugin]))
    serial = _pytest(tmp_path / "serial", "-q", "-rA")
    fast = _pytest(tmp_path / "fast", "-q", "-rA", "--cores", "1")
    assert fast["stats"]["plain_results"] > 0
    assert fast["stats"]["teststatus_reused"] == 0
    assert _parallel_part(fast["out"]) == _parallel_part(serial["out"])
    assert fast["junit"] == serial["junit"]
    mark = "pppppppppp" if plugin == "custom_status" else "failed by a plugin"
    assert mark in fast["out"]
