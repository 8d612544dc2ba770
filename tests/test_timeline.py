"""The run's timeline: the per-worker terminal summary, and `--mproc-timeline PATH.html`
checked in a real headless browser (Debian's chromium): the page renders without script
errors and draws exactly one bar per test, with the serial run's outcome counts."""

from __future__ import annotations

import re
import shutil
import subprocess
from types import SimpleNamespace

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

MIXED = """
import pytest

@pytest.mark.parametrize("i", range(30))
def test_ok(i):
    pass

def test_fails():
    assert 0

@pytest.mark.skip(reason="no")
def test_skipped():
    pass

@pytest.mark.xfail
def test_xfail():
    assert 0

@pytest.mark.xfail
def test_xpass():
    pass

@pytest.fixture
def broken():
    raise RuntimeError("setup")

def test_error(broken):
    pass
"""


def body_attributes(path) -> dict:
    """The page's <body> attributes after its scripts ran, in headless chromium."""
    if CHROMIUM is None:
        pytest.skip("no chromium here (scripts/setup.sh installs it)")
    r = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom", f"file://{path}"],
                       capture_output=True, text=True, timeout=120)
    m = re.search(r"<body([^>]*)>", r.stdout)
    assert m, r.stdout[:2000] + r.stderr[-2000:]
    return dict(re.findall(r'data-([\w-]+)="([^"]*)"', m.group(1)))


def test_timeline_page_has_one_bar_per_test_with_the_serial_outcomes(pytester):
    pytester.makepyfile(test_mixed=MIXED)
    serial = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    counts = serial.parseoutcomes()
    out = pytester.path / "report" / "timeline.html"
    run = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--cores", "2", f"--mproc-timeline={out}")
    assert run.parseoutcomes() == counts
    run.stdout.fnmatch_lines([f"pytest-mproc: timeline written to {out}"])
    attrs = body_attributes(out)
    assert attrs["errors"] == "0"
    assert int(attrs["bars"]) == 35
    assert {k: int(attrs[k]) for k in ("passed", "failed", "error", "skipped", "xfailed", "xpassed")} == {
        "passed": counts["passed"], "failed": counts["failed"], "error": counts["errors"],
        "skipped": counts["skipped"], "xfailed": counts["xfailed"], "xpassed": counts["xpassed"]}
    page = out.read_text()
    # Self-contained: no fetch of anything.
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)
    assert "test_mixed.py::test_error" in page


def test_timeline_of_100k_tests_renders(tmp_path):
    """Synthetic: 100 000 tests on 64 workers of 2 nodes; every bar drawn, no script error."""
    from pytest_mproc.timeline import Timeline

    config = SimpleNamespace(getoption=lambda name, default=None: str(tmp_path / "big.html"),
                             pluginmanager=SimpleNamespace(register=lambda *a: None))
    tl = Timeline(config)
    t0 = tl.t0
    for n in range(100_000):
        lane = tl.lane(f"node{n % 2}", f"gw{n % 32}")
        start = t0 + (n // 64) * 0.01
        lane.tests.append((start, start + 0.009, "failed" if n % 1000 == 0 else "passed",
                           f"tests/test_m{n // 1000}.py::test_{n}", (0.001, 0.007, 0.001)))
    path = tl.write()
    attrs = body_attributes(path)
    assert attrs["errors"] == "0"
    assert attrs["bars"] == "100000"
    assert (attrs["passed"], attrs["failed"]) == ("99900", "100")


def test_a_worker_idle_for_most_of_the_run_gets_a_summary_line(pytester):
    """Without -v, only a worker idle for more than 20% of the run (and at least 1 s) is listed,
    saying why."""
    pytester.makepyfile(test_skew="""
        import time, pytest
        def test_long():
            time.sleep(2.0)  # the work itself: one long test
        @pytest.mark.parametrize("i", range(4))
        def test_short(i):
            pass
        """)
    run = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--cores", "2")
    run.assert_outcomes(passed=5)
    lines = [l for l in run.outlines if re.match(r"gw\d: \d+ tests, busy", l)]
    assert len(lines) == 1 and "idle" in lines[0] and "nothing left to run" in lines[0], run.outlines
    verbose = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--cores", "2", "-v")
    lines = [l for l in verbose.outlines if re.match(r"gw\d: \d+ tests, busy", l)]
    assert sorted(l.split(":")[0] for l in lines) == ["gw0", "gw1"]
    assert sum(int(re.match(r"gw\d: (\d+) tests", l).group(1)) for l in lines) == 5


OUTPUT = """
import os, sys, pytest

@pytest.mark.parametrize("i", range(8))
def test_prints(i):
    me = os.environ.get("PYTEST_XDIST_WORKER", "serial")
    print(f"out {i} from {me} tty={sys.stdout.isatty()}")
    sys.stderr.write(f"err {i} from {me}\\n")
"""


def test_s_output_lines_carry_their_workers_prefix(pytester):
    pytester.makepyfile(test_output=OUTPUT)
    run = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--cores", "2", "-s")
    run.assert_outcomes(passed=8)
    out = [l for l in run.outlines if " from gw" in l]
    err = [l for l in run.errlines if " from gw" in l]
    assert len(out) == 8 and len(err) == 8
    for line in out + err:
        # (pytest's own progress may share the line, as in a serial -s run)
        found = re.findall(r"\[(gw\d)\] (?:out|err) \d from (gw\d)", line)
        assert len(found) == 1 and found[0][0] == found[0][1], line


def test_s_output_is_still_a_terminal_when_the_run_is_on_one(pytester):
    """On a terminal, workers print to pseudo-terminals: isatty() is what a serial run sees."""
    if shutil.which("script") is None:
        pytest.skip("no script(1)")
    pytester.makepyfile(test_output=OUTPUT)
    import sys as _sys

    def under_terminal(*args):
        cmd = " ".join([_sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args])
        return subprocess.run(["script", "-qec", cmd, "/dev/null"], cwd=pytester.path, capture_output=True,
                              text=True, timeout=120).stdout
    serial = under_terminal("-s")
    parallel = under_terminal("--cores", "2", "-s")
    assert serial.count("tty=True") == 8
    assert len(re.findall(r"\[(gw\d)\] out \d from \1 tty=True", parallel)) == 8, parallel


def test_a_workers_own_work_between_tests_is_not_waiting_for_work():
    """Short gaps between a worker's tests are its own per-test work (it counts as busy); only
    longer gaps are waiting for work. A worker running thousands of tiny tests back to back is
    not reported idle."""
    from pytest_mproc.timeline import OWN_WORK_GAP_S, Timeline

    config = SimpleNamespace(getoption=lambda *a, **k: None)
    tl = Timeline(config)
    t = 1000.0
    tl.lane("", "gw0").tests.append((t, t + 0.001, "passed", "first", (0, 0.001, 0)))
    for i in range(2000):  # 1 ms tests, 0.4 ms apart
        t += 0.0014
        tl.passed(f"t{i}", "", "gw0", (0.0, t, t, 0.001, t, t + 0.001, 0.0, t + 0.001, t + 0.001))
    t += 0.0014
    # one long wait: 1 s before the last test
    tl.passed("late", "", "gw1", (0.0, t + 1.0, t + 1.0, 0.0, t + 1.0, t + 1.0, 0.0, t + 1.0, t + 1.001))
    tl.passed("after_wait", "", "gw0", (0.0, t + 1.0, t + 1.0, 0.001, t + 1.0, t + 1.001, 0.0, t + 1.001, t + 1.001))
    row = next(w for w in tl.workers() if w["worker"] == "gw0")
    span = (t + 1.001) - 1000.0
    assert 0.0004 < OWN_WORK_GAP_S
    # busy: the tests and the short gaps between them; idle: the one long gap.
    assert row["idle"] == pytest.approx(1.0004, abs=1e-3), row
    assert row["busy"] == pytest.approx(span - row["idle"], abs=1e-6), row
    assert row["why_idle"].startswith("waiting for work"), row
