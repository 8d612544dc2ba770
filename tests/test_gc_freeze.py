"""gc_freeze.py: the collected tree is frozen before the workers fork (they inherit it frozen),
the main freezes the reports it keeps as it replays them, and the frozen objects stay frozen
when the session ends, until the next session in the same process starts."""

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
    # Nothing was unfrozen for the shutdown.
    # (objects freed since by their reference count leave the frozen set: not equal, but near)
    assert counts["main_exit"] > counts["worker"], counts


def test_switched_off(pytester, suite, monkeypatch):
    monkeypatch.setenv("PTMPROC_NO_GC_FREEZE", "1")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-q", "--cores", "2")
    result.assert_outcomes(passed=TESTS)
    assert _counts(suite) == {"worker": 0, "main_sessionfinish": 0, "main_exit": 0}


def test_next_session_in_the_process_releases_the_previous_one(pytester, suite):
    (pytester.path / "conftest.py").write_text(textwrap.dedent(CONFTEST) + textwrap.dedent("""
        def pytest_sessionstart(session):
            with open(os.path.join(os.environ["FREEZE_OUT"], "..", "starts.txt"), "a") as f:
                f.write(f"{gc.get_freeze_count()}\\n")
    """))
    script = pytester.path / "run_three.py"
    script.write_text(textwrap.dedent("""
        import gc, json, sys
        import pytest
        from pytest_mproc import direct_hooks, timeline
        codes, at_end, leftovers = [], [], []
        for args in (["--cores", "2"], ["--cores", "2"], []):
            codes.append(int(pytest.main(["-p", "no:cacheprovider", "-q", *args, "test_many.py"])))
            at_end.append(gc.get_freeze_count())
            leftovers.append([len(direct_hooks._MADE_DIRECT), timeline.current() is not None])
        print("RESULT " + json.dumps([codes, at_end, leftovers]))
    """))
    proc = subprocess.run([sys.executable, str(script)], cwd=pytester.path, capture_output=True, text=True,
                          timeout=300)
    line = next(l for l in proc.stdout.splitlines() if l.startswith("RESULT "))
    codes, at_end, leftovers = json.loads(line[len("RESULT "):])
    starts = [int(n) for n in (pytester.path / "starts.txt").read_text().split()]
    assert codes == [0, 0, 0]
    # Left frozen when pytest.main() returns (a process that exits next does not walk them)...
    assert at_end[0] > TESTS and at_end[1] > TESTS, at_end
    # ...and released when the next session starts; a session without --cores freezes nothing.
    assert starts[1:] == [0, 0] and at_end[2] == 0, (starts, at_end)
    # Nothing module-level of ours keeps a finished session alive.
    assert leftovers == [[0, False]] * 3, leftovers


def test_nested_session_in_a_worker_keeps_the_inherited_tree_frozen(pytester, suite):
    pytester.makepyfile(test_nested="""
        import gc, os, pytest

        def test_nested(tmp_path):
            (tmp_path / "test_inner.py").write_text("def test_inner(): pass\\n")
            before = gc.get_freeze_count()
            assert pytest.main(["-q", "-p", "no:cacheprovider", str(tmp_path / "test_inner.py")]) == 0
            for key, value in (("nested_before", before), ("nested_after", gc.get_freeze_count())):
                with open(os.path.join(os.environ["FREEZE_OUT"], f"{key}.0"), "w") as f:
                    f.write(str(value))
    """)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-q", "--cores", "2")
    result.assert_outcomes(passed=TESTS + 1)
    counts = _counts(suite)
    # The main's tree, inherited frozen, is still frozen after the nested session in the worker.
    assert counts["nested_after"] > TESTS, counts
    assert counts["nested_after"] >= counts["nested_before"] * 0.9, counts


# Replays recorded plain results in the main's own process with the collector off, then asks
# it for cyclic garbage: what gc_freeze.py relies on to freeze a clean window uncollected.
REPLAY_PLUGIN = """
    import gc, json, os, pytest
    from pytest_mproc import messages
    from pytest_mproc.replay import Outcomes, RunOutcome
    from pytest_mproc.worker import result_encoder

    class Record:
        def __init__(self):
            self.reports = []

        def pytest_runtest_logreport(self, report):
            self.reports.append(report)

    class Cyclic:
        # a third-party plugin whose logreport makes a reference cycle per report
        def pytest_runtest_logreport(self, report):
            box = {}
            box["me"] = box

    class Replay:
        @pytest.hookimpl(tryfirst=True)
        def pytest_runtestloop(self, session):
            config = session.config
            pm = config.pluginmanager
            encode = result_encoder(config, "gw0", None)
            tr = pm.getplugin("terminalreporter")
            pm.unregister(tr)
            record = Record()
            pm.register(record, "record")
            recorded = []
            for i, item in enumerate(session.items):
                nextitem = session.items[i + 1] if i + 1 < len(session.items) else None
                item.ihook.pytest_runtest_protocol(item=item, nextitem=nextitem)
                recorded.append(encode(i, item, record.reports, []))
                record.reports = []
            pm.unregister(record)
            pm.register(tr, "terminalreporter")
            if os.environ.get("WITH_CYCLIC"):
                pm.register(Cyclic(), "cyclic")
            outcomes = Outcomes(session, RunOutcome())
            gc.disable()
            gc.collect()
            try:
                for data in recorded:
                    outcomes.result(messages.decode(data))
                garbage = gc.collect()
            finally:
                gc.enable()
            with open(os.environ["REPLAY_OUT"], "w") as f:
                json.dump({"garbage": garbage, "plain": outcomes.plain,
                           "dispatched": outcomes.hooks.dispatches()}, f)
            return True

    def pytest_configure(config):
        config.pluginmanager.register(Replay(), "replay")
"""


@pytest.mark.parametrize("cyclic", [False, True], ids=["pytest-only", "cyclic-plugin"])
def test_plain_replay_makes_no_cyclic_garbage(pytester, monkeypatch, cyclic):
    out = pytester.path / "replay.json"
    monkeypatch.setenv("REPLAY_OUT", str(out))
    monkeypatch.setenv("PTMPROC_NO_GC_FREEZE", "1")  # no freezing or collecting during the replay
    if cyclic:
        monkeypatch.setenv("WITH_CYCLIC", "1")
    pytester.makeconftest(REPLAY_PLUGIN)
    pytester.makepyfile(test_many="""
        import pytest

        @pytest.mark.parametrize("n", range(200))
        def test_n(n):
            pass
    """)
    for args in (["-q"], ["-v"], ["-rA"]):
        result = pytester.runpytest_subprocess("-p", "no:cacheprovider", *args)
        assert result.ret == 0, result.stdout.str()
        got = json.loads(out.read_text())
        assert got["plain"] == 200, got
        if cyclic:
            # The check sees a plugin's cycles (and the plugin turns the windows dirty).
            assert got["garbage"] >= 3 * 200 and got["dispatched"] >= 3 * 200, got
        else:
            assert got == {"garbage": 0, "plain": 200, "dispatched": 0}, (args, got)


def test_a_plugins_cyclic_garbage_is_collected_during_the_run(pytester, suite):
    """A window in which a third-party hook ran is collected before it is frozen, so a
    plugin's cycles are freed during the run (frozen uncollected they would live to the end)."""
    from pytest_mproc import gc_freeze

    (pytester.path / "conftest.py").write_text(textwrap.dedent(CONFTEST) + textwrap.dedent("""
        FREED = [0]
        MADE = [0]
        # CPython's own young collection would find some of them by chance: out of the way.
        gc.set_threshold(1_000_000)

        class Cycle:
            def __init__(self):
                self.me = self

            def __del__(self):
                FREED[0] += 1

        def pytest_runtest_logreport(report):
            if os.getpid() == MAIN:
                MADE[0] += 1
                Cycle()

        def pytest_terminal_summary(terminalreporter):
            if os.getpid() == MAIN:
                with open(os.path.join(OUT, "cycles.0"), "w") as f:
                    f.write(f"{MADE[0]} {FREED[0]}")
    """))
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-q", "--cores", "2")
    result.assert_outcomes(passed=TESTS)
    made, freed = map(int, (suite / "cycles.0").read_text().split())
    assert made == 3 * TESTS
    # Only the last (partial) window's may be waiting.
    assert freed >= made - 3 * gc_freeze.EVERY, (made, freed)
