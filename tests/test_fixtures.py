"""global_fixture / node_fixture (exactly once, shared value, teardown after the last user,
errors) and race-free temporary directories."""

import pytest

COMMON = """
import os, time

def note(*parts):
    fd = os.open(os.environ["FXLOG"], os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    os.write(fd, (" ".join(str(p) for p in parts) + "\\n").encode())
    os.close(fd)

def barrier(name, n):
    # Every caller waits until n callers arrived: they then proceed at the same instant.
    d = os.path.join(os.path.dirname(os.environ["FXLOG"]), "barrier-" + name)
    os.makedirs(d, exist_ok=True)
    open(os.path.join(d, str(os.getpid())), "w").close()
    end = time.monotonic() + 30
    while len(os.listdir(d)) < n and time.monotonic() < end:
        time.sleep(0.001)
"""


@pytest.fixture
def fxlog(event_log):
    return event_log("FXLOG", "fxcommon", COMMON)


def test_global_fixture_runs_once_even_when_all_workers_ask_at_once(run, pytester, fxlog):
    pytester.makeconftest(
        """
        import os, uuid, time
        from pytest_mproc.fixtures import global_fixture
        from fxcommon import note

        @global_fixture()
        def shared():
            note("setup", os.getpid())
            value = uuid.uuid4().hex
            yield value
            note("teardown", os.getpid(), time.monotonic())
        """
    )
    pytester.makepyfile(
        """
        import os, time, pytest
        from fxcommon import note, barrier

        @pytest.mark.parametrize("n", range(4))
        def test_first(n, request):
            barrier("first", 4)                      # all four workers collide here
            value = request.getfixturevalue("shared")
            note("use", os.getpid(), value, time.monotonic())

        @pytest.mark.parametrize("n", range(20))
        def test_more(n, shared):
            note("use", os.getpid(), shared, time.monotonic())
        """
    )
    result = run("--cores", "4")
    result.assert_outcomes(passed=24)
    rows = fxlog()
    setups = [r for r in rows if r[0] == "setup"]
    teardowns = [r for r in rows if r[0] == "teardown"]
    uses = [r for r in rows if r[0] == "use"]
    assert len(setups) == 1 and len(teardowns) == 1
    assert len({r[2] for r in uses}) == 1  # the same value everywhere
    assert len({r[1] for r in uses}) == 4  # ... seen by four different workers
    assert float(teardowns[0][2]) > max(float(r[3]) for r in uses)  # after the last user


def test_node_fixture_once_autouse_and_depends_on_global(run, pytester, fxlog):
    pytester.makeconftest(
        """
        import os
        from pytest_mproc.fixtures import global_fixture, node_fixture
        from fxcommon import note

        @global_fixture()
        def base():
            note("setup-global")
            return 40

        @node_fixture(autouse=True)
        def node_value(base):
            note("setup-node")
            return {"answer": base + 2, "blob": b"x" * (5 << 20)}
        """
    )
    pytester.makepyfile(
        """
        import os, pytest
        from fxcommon import note

        @pytest.mark.parametrize("n", range(10))
        def test_n(n, request):
            v = request.getfixturevalue("node_value")
            assert v["answer"] == 42 and len(v["blob"]) == 5 << 20
            note("use", os.getpid())
        """
    )
    run("--cores", "2").assert_outcomes(passed=10)
    rows = fxlog()
    assert [r[0] for r in rows].count("setup-node") == 1
    assert [r[0] for r in rows].count("setup-global") == 1
    assert len({r[1] for r in rows if r[0] == "use"}) == 2


def test_setup_error_errors_every_user_with_original_traceback(run, pytester, fxlog):
    pytester.makeconftest(
        """
        from pytest_mproc.fixtures import global_fixture
        from fxcommon import note

        @global_fixture()
        def broken():
            note("setup")
            raise ValueError("database refused: code 1234")
        """
    )
    pytester.makepyfile(
        """
        import pytest
        @pytest.mark.parametrize("n", range(5))
        def test_user(n, broken): pass
        def test_bystander(): pass
        """
    )
    result = run("--cores", "2")
    result.assert_outcomes(passed=1, errors=5)
    out = result.stdout.str()
    assert out.count("ValueError: database refused: code 1234") >= 5
    assert 'raise ValueError("database refused: code 1234")' in out
    assert len(fxlog()) == 1  # not retried per test


def test_unpicklable_value_is_a_clear_error(run, pytester):
    pytester.makeconftest(
        """
        import threading
        from pytest_mproc.fixtures import global_fixture

        @global_fixture()
        def lock():
            return threading.Lock()
        """
    )
    pytester.makepyfile("def test_a(lock): pass\ndef test_b(lock): pass")
    result = run("--cores", "2")
    result.assert_outcomes(errors=2)
    out = result.stdout.str()
    assert "global fixture 'lock' (type lock) cannot be pickled" in out


@pytest.mark.parametrize("kwargs,bad", [("scope='module'", "'scope'"), ("autouse=True", "'autouse'")])
def test_scope_or_autouse_on_global_is_usage_error(run, pytester, kwargs, bad):
    pytester.makeconftest(
        f"""
        from pytest_mproc.fixtures import global_fixture

        @global_fixture({kwargs})
        def gfx():
            return 1
        """
    )
    pytester.makepyfile("def test_a(gfx): pass")
    result = run("--cores", "2")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    err = result.stderr.str()
    assert f"global_fixture 'gfx': {bad} cannot be given" in err
    assert "Traceback" not in err


def test_global_depending_on_session_fixture_is_usage_error(run, pytester):
    pytester.makeconftest(
        """
        import pytest
        from pytest_mproc.fixtures import global_fixture

        @pytest.fixture(scope="session")
        def sess():
            return 1

        @global_fixture()
        def gfx(sess):
            return sess
        """
    )
    pytester.makepyfile("def test_a(gfx): pass")
    result = run("--cores", "2")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "global fixture 'gfx' depends on 'sess', which is not a global fixture" in result.stderr.str()


def test_without_cores_global_and_node_fixtures_are_session_fixtures(run, pytester, fxlog):
    pytester.makeconftest(
        """
        from pytest_mproc.fixtures import global_fixture, node_fixture
        from fxcommon import note

        @global_fixture()
        def g():
            note("setup-g")
            yield 1
            note("teardown-g")

        @node_fixture()
        def n(g):
            note("setup-n")
            return g + 1
        """
    )
    pytester.makepyfile("def test_a(n): assert n == 2\ndef test_b(n, g): assert g == 1")
    run().assert_outcomes(passed=2)
    assert [r[0] for r in fxlog()] == ["setup-g", "setup-n", "teardown-g"]


def test_mp_tmpdir_and_tmp_path_unique_under_parallel_use(run, pytester):
    pytester.makepyfile(
        """
        import os, pathlib, pytest

        @pytest.mark.parametrize("n", range(150))
        def test_dirs(n, mp_tmpdir, tmp_path, mp_tmpdir_factory, mp_tmp_dir, mp_tmp_dir_factory, request):
            extra = mp_tmpdir_factory.create_tmpdir()
            legacy = mp_tmp_dir_factory.create_tmp_dir()
            for d in (mp_tmpdir, tmp_path, extra, legacy, mp_tmp_dir):
                assert isinstance(d, pathlib.Path) and d.is_dir()
            assert list(mp_tmpdir.iterdir()) == [] and list(tmp_path.iterdir()) == []
            for d in (mp_tmpdir, tmp_path, extra, legacy):
                (d / "owner").write_text(request.node.nodeid)
            with open(os.environ["DIRLOG"], "a") as f:
                for d in (mp_tmpdir, tmp_path, extra, legacy):
                    f.write(f"{d}\\n")
            # Nobody else wrote into our directories meanwhile.
            for d in (mp_tmpdir, tmp_path, extra, legacy):
                assert (d / "owner").read_text() == request.node.nodeid
        """
    )
    import os

    log = pytester.path / "dirs.txt"
    os.environ["DIRLOG"] = str(log)
    try:
        result = run("--cores", "4")
    finally:
        del os.environ["DIRLOG"]
    result.assert_outcomes(passed=150)
    dirs = log.read_text().splitlines()
    assert len(dirs) == 600 and len(set(dirs)) == 600
    # One run root, a subdirectory per worker.
    roots = {os.path.dirname(os.path.dirname(d)) for d in dirs}
    assert len(roots) == 1
    assert {os.path.basename(os.path.dirname(d)) for d in dirs} <= {"gw0", "gw1", "gw2", "gw3"}


@pytest.mark.parametrize("policy", ["failed", "all"])
def test_tmp_path_retention_policy_keeps_what_a_serial_run_keeps(pytester, policy):
    """Under tmp_path_retention_policy=failed a failed test's tmp_path survives the run, as it
    does serially (a worker's own session always ends "passed": it must not remove its
    basetemp at its end)."""
    import os
    import subprocess
    import sys

    pytester.makeini(f"[pytest]\ntmp_path_retention_policy = {policy}\n")
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.parametrize("n", range(6))
        def test_write(tmp_path, n):
            (tmp_path / "mark").write_text(str(n))
            assert n % 2 == 0
        """
    )
    kept = {}
    for mode, extra in (("serial", []), ("cores", ["--cores", "2"])):
        root = pytester.path / f"root-{mode}"
        root.mkdir()
        # No --basetemp (pytester would pass one): pytest's own numbered run directories.
        env = dict(os.environ, PYTEST_DEBUG_TEMPROOT=str(root))
        proc = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", *extra],
                              cwd=pytester.path, env=env, capture_output=True, text=True, timeout=120)
        assert "3 failed, 3 passed" in proc.stdout, proc.stdout + proc.stderr
        kept[mode] = sorted(p.read_text() for p in root.rglob("mark"))
    assert kept["serial"] == (["1", "3", "5"] if policy == "failed" else [str(n) for n in range(6)])
    assert kept["cores"] == kept["serial"]
