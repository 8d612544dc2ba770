"""Popular plugins, from PyPI and pinned (scripts/plugins_venv.sh), give a serial run's
outcomes, counts, summary sections and files under `--cores 2` and through the bridge. Each
test runs one suite exercising the plugin's main feature serially and in parallel, in the
plugins' own venv, and compares.

Also pytest-xdist's plugin protocol as a plugin author sees it, and pytest-mproc's own hooks."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from cluster import Cluster

VENV = os.environ.get("PTMPROC_PLUGINS_VENV", "/tmp/pytest-mproc-plugins")
# Plugins behave differently when pytest-xdist is importable: every test runs in a venv with it
# and in one without it.
VENVS = {"xdist": f"{VENV}/bin/python", "no-xdist": f"{VENV}-noxdist/bin/python"}


@pytest.fixture(scope="session", params=sorted(VENVS))
def python(request):
    path = VENVS[request.param]
    if not Path(path).exists():
        pytest.fail(f"{path} missing: run scripts/plugins_venv.sh (scripts/setup.sh does)")
    return path


class Run:
    def __init__(self, proc: subprocess.CompletedProcess) -> None:
        self.ret = proc.returncode
        self.out = proc.stdout

    @property
    def summary(self) -> str:
        """The final counts line, without the time."""
        last = [l for l in self.out.splitlines() if l.strip()][-1]
        return re.sub(r" in [\d.]+s.*", "", last.strip("= "))

    def short(self) -> list[str]:
        """The -rA short summary lines, sorted."""
        pat = re.compile(r"^(PASSED|FAILED|ERROR|SKIPPED|XFAIL|XPASS|RERUN|SUBPASSED|SUBFAILED|SUBSKIPPED)\S*( \S+)")
        return sorted(l for l in self.out.splitlines() if pat.match(l))

    def section(self, title: str) -> list[str]:
        """The lines of a summary section whose separator line names `title`."""
        lines = self.out.splitlines()
        for i, l in enumerate(lines):
            if re.match(rf"^[=-]+ {re.escape(title)} [=-]+$", l):
                out = []
                for m in lines[i + 1:]:
                    if re.match(r"^[=-]{5,}( .* [=-]+)?$", m):
                        break
                    out.append(m)
                return out
        return []


def pytest_in(python: str, path: Path, *args: str, env: dict | None = None) -> Run:
    e = {k: v for k, v in os.environ.items()
         if not k.startswith(("PTMPROC_WORKER", "PYTEST_XDIST", "PYTEST_ADDOPTS"))}
    e.update(env or {})
    proc = subprocess.run([python, "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:randomly", *args], cwd=path,
                          env=e, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=180)
    return Run(proc)


def both(python, path, *args, env=None) -> tuple[Run, Run]:
    return pytest_in(python, path, *args, env=env), pytest_in(python, path, "--cores", "2", *args, env=env)


def write(path: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_text(text)


SUBTESTS = """
def test_subs(subtests):
    for i in range(3):
        with subtests.test(msg="check", i=i):
            assert i != 1

def test_ok():
    pass
"""


def test_subtests_failing_subtest_fails_its_test(python, tmp_path):
    write(tmp_path, {"test_sub.py": SUBTESTS})
    serial, parallel = both(python, tmp_path, "-rA")
    assert "contains 1 failed subtest" in serial.out
    assert parallel.ret == serial.ret == 1
    assert parallel.summary == serial.summary
    assert serial.summary.startswith("2 failed, 1 passed")
    assert parallel.short() == serial.short()
    assert "SUBFAILED[check] (i=1) test_sub.py::test_subs" in parallel.out


SNAPSHOTS = """
import pytest

@pytest.mark.parametrize("i", range(5))
def test_snap(snapshot, i):
    assert {"value": i * VALUE} == snapshot
"""


def snapshot_files(path: Path) -> dict[str, str]:
    d = path / "__snapshots__"
    return {p.name: p.read_text() for p in sorted(d.iterdir())} if d.exists() else {}


def test_syrupy_update_writes_and_compare_reports_as_serially(python, tmp_path):
    a, b = tmp_path / "serial", tmp_path / "cores"
    for d in (a, b):
        d.mkdir()
        write(d, {"test_snap.py": "VALUE = 1\n" + SNAPSHOTS})
    serial = pytest_in(python, a, "--snapshot-update")
    parallel = pytest_in(python, b, "--cores", "2", "--snapshot-update")
    assert parallel.section("snapshot report summary") == serial.section("snapshot report summary")
    assert serial.section("snapshot report summary") == ["5 snapshots generated."]
    assert snapshot_files(b) == snapshot_files(a) and len(snapshot_files(a)) == 1, "no lock files, same content"
    # Compare: one value changed -> 1 failed, 4 passed, nothing unused, nothing deleted.
    for d in (a, b):
        (d / "test_snap.py").write_text(SNAPSHOTS.replace("i * VALUE", "i * VALUE if i != 3 else 99")
                                        .replace("import pytest", "import pytest\nVALUE = 1"))
    serial = pytest_in(python, a)
    parallel = pytest_in(python, b, "--cores", "2")
    assert serial.section("snapshot report summary") == ["1 snapshot failed. 4 snapshots passed."]
    assert parallel.section("snapshot report summary") == serial.section("snapshot report summary")
    assert parallel.summary == serial.summary
    # An update run under --cores keeps every used snapshot (it used to delete them all).
    before = snapshot_files(b)
    pytest_in(python, b, "--cores", "2", "--snapshot-update")
    assert set(snapshot_files(b)) == set(before)


def test_pytest_timeout_reports_the_timeout_as_serially(python, tmp_path):
    write(tmp_path, {"test_to.py": "import time\ndef test_slow():\n    time.sleep(30)\ndef test_fast():\n    pass\n"})
    serial, parallel = both(python, tmp_path, "--timeout", "1", "-rA")
    assert parallel.summary == serial.summary == "1 failed, 1 passed"
    assert parallel.short() == serial.short()
    assert "Failed: Timeout (>1.0s) from pytest-timeout" in parallel.out
    assert "terminalreporter is not None" not in parallel.out


RERUN = """
import os, pytest

@pytest.mark.flaky(reruns=2)
def test_flaky(request):
    marker = os.path.join(os.environ["RR_DIR"], "ran-" + request.node.name)
    first = not os.path.exists(marker)
    open(marker, "w").close()
    assert not first

def test_plain():
    pass
"""


def test_rerunfailures_counts_and_marks_reruns(python, tmp_path):
    write(tmp_path, {"test_rr.py": RERUN})
    (tmp_path / "s").mkdir(), (tmp_path / "p").mkdir()
    serial = pytest_in(python, tmp_path, "-rA", env={"RR_DIR": str(tmp_path / "s")})
    parallel = pytest_in(python, tmp_path, "--cores", "2", "-rA", env={"RR_DIR": str(tmp_path / "p")})
    assert serial.summary == "2 passed, 1 rerun"
    assert parallel.summary == serial.summary
    assert parallel.short() == serial.short()


def test_hypothesis_statistics_section(python, tmp_path):
    # Separate directories: each run starts with an empty example database (.hypothesis/).
    runs = []
    for name, extra in (("serial", ()), ("cores", ("--cores", "2"))):
        d = tmp_path / name
        d.mkdir()
        write(d, {"test_hyp.py": "from hypothesis import given, strategies as st\n"
                                 "@given(st.integers())\ndef test_int(x):\n    assert isinstance(x, int)\n"})
        runs.append(pytest_in(python, d, "--hypothesis-show-statistics", *extra))
    serial, parallel = runs

    def shape(run):
        # Numbers and the timing wording ("< 1ms" / "~ 1-2 ms") depend on the machine's speed.
        return [re.sub(r"runtimes: .*?, of", "runtimes: T, of", re.sub(r"[\d.]+", "N", l))
                for l in run.section("Hypothesis Statistics") if l.strip()]

    assert "test_hyp.py::test_int:" in serial.section("Hypothesis Statistics")
    assert shape(parallel) == shape(serial)


def test_benchmark_table(python, tmp_path):
    write(tmp_path, {"test_bench.py": "def test_sum(benchmark):\n    benchmark(sum, range(50))\n"
                                      "def test_sorted(benchmark):\n    benchmark(sorted, range(50))\n"})
    serial, parallel = both(python, tmp_path, "--benchmark-max-time=0.05", "--benchmark-json=out.json")

    def names(run):
        return sorted(l.split()[0] for l in run.out.splitlines() if re.match(r"^test_(sum|sorted)\s", l))

    assert names(serial) == ["test_sorted", "test_sum"]
    assert names(parallel) == names(serial)
    saved = json.loads((tmp_path / "out.json").read_text())  # the parallel run wrote it last
    assert sorted(b["name"] for b in saved["benchmarks"]) == ["test_sorted", "test_sum"]


def test_randomly_reseeds_each_test_as_serially(python, tmp_path):
    write(tmp_path, {"test_rand.py": "import os, random, pytest\n@pytest.mark.parametrize('i', range(8))\n"
                                     "def test_r(i):\n    with open(os.environ['RAND_OUT'], 'a') as f:\n"
                                     "        f.write(f'{i} {random.random()}\\n')\n"})
    runs = {}
    for name, extra in (("serial", ()), ("cores", ("--cores", "2"))):
        out = tmp_path / name
        r = subprocess.run([python, "-m", "pytest", "-p", "no:cacheprovider", "-p", "randomly", "--randomly-seed=123",
                            *extra], cwd=tmp_path, env={**os.environ, "RAND_OUT": str(out)},
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=120)
        assert r.returncode == 0, r.stdout
        runs[name] = sorted(out.read_text().splitlines())
    assert len(runs["serial"]) == 8
    assert runs["cores"] == runs["serial"]


def test_asyncio_outcomes(python, tmp_path):
    write(tmp_path, {"test_async.py": "import asyncio, pytest\n@pytest.mark.asyncio\nasync def test_a():\n"
                                      "    await asyncio.sleep(0)\n@pytest.mark.asyncio\nasync def test_b():\n"
                                      "    assert 0\n",
                     "pytest.ini": "[pytest]\nasyncio_default_fixture_loop_scope = function\n"})
    serial, parallel = both(python, tmp_path, "-rA")
    assert serial.summary == "1 failed, 1 passed"
    assert parallel.short() == serial.short() and parallel.summary == serial.summary


DJANGO_SETTINGS = """
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": "db.sqlite3",
                         "TEST": {"NAME": "test_db.sqlite3"}}}
INSTALLED_APPS = ["django.contrib.contenttypes", "django.contrib.auth"]
USE_TZ = True
SECRET_KEY = "test"
"""
DJANGO_TESTS = """
import os, pytest
from django.db import connection

@pytest.mark.parametrize("i", range(6))
def test_user(django_user_model, i):
    django_user_model.objects.create(username=f"user{i}")
    assert django_user_model.objects.count() == 1  # each test in its own transaction
    with open(os.environ["DB_OUT"], "a") as f:
        f.write(os.path.basename(connection.settings_dict["NAME"]) + "\\n")
"""


def test_django_gives_each_worker_its_own_test_database(python, tmp_path):
    write(tmp_path, {"settings.py": DJANGO_SETTINGS, "test_dj.py": DJANGO_TESTS})
    names = {}
    for name, extra in (("serial", ()), ("cores", ("--cores", "2"))):
        out = tmp_path / f"{name}.txt"
        run = pytest_in(python, tmp_path, "--ds=settings", *extra, env={"DB_OUT": str(out)})
        assert run.summary == "6 passed", run.out
        names[name] = set(out.read_text().split())
    assert names["serial"] == {"test_db.sqlite3"}
    assert names["cores"] == {"test_db.sqlite3_gw0", "test_db.sqlite3_gw1"}


def test_html_report_has_the_serial_results(python, tmp_path):
    write(tmp_path, {"test_sub.py": SUBTESTS,
                     "test_more.py": "import pytest\ndef test_fail():\n    assert 0\n"
                                     "@pytest.mark.skip\ndef test_skip():\n    pass\n"})

    def results(html: Path) -> list:
        import html as h

        blob = re.search(r'data-jsonblob="([^"]*)"', html.read_text()).group(1)
        tests = json.loads(h.unescape(blob))["tests"]
        return sorted((k, sorted(r["result"] for r in v)) for k, v in tests.items())

    pytest_in(python, tmp_path, "--html=serial.html")
    pytest_in(python, tmp_path, "--cores", "2", "--html=cores.html")
    assert results(tmp_path / "cores.html") == results(tmp_path / "serial.html")
    assert ("test_more.py::test_fail", ["Failed"]) in results(tmp_path / "serial.html")


def test_cov_totals(python, tmp_path):
    write(tmp_path, {"mod.py": "def f(x):\n    if x:\n        return 1\n    return 2\n\ndef g():\n    return 3\n",
                     "test_cov.py": "import mod\ndef test_a():\n    assert mod.f(1) == 1\n"
                                    "def test_b():\n    assert mod.f(0) == 2\n"})
    serial, parallel = both(python, tmp_path, "--cov=mod", "--cov-report=term-missing")

    def table(run):
        return [l for l in run.out.splitlines() if l.startswith(("mod.py", "TOTAL"))]

    assert table(serial) == ["mod.py       6      1    83%   7", "TOTAL        6      1    83%"]
    assert table(parallel) == table(serial)


def test_order_marks_are_applied_to_the_queue(python, tmp_path):
    write(tmp_path, {"test_order.py": "import os, pytest\n"
                                      "def _log(n):\n    open(os.environ['ORDER_OUT'], 'a').write(n + '\\n')\n"
                                      "@pytest.mark.order(3)\ndef test_c():\n    _log('c')\n"
                                      "@pytest.mark.order(1)\ndef test_a():\n    _log('a')\n"
                                      "@pytest.mark.order(2)\ndef test_b():\n    _log('b')\n"})
    out = tmp_path / "order.txt"
    serial, parallel = both(python, tmp_path, "-rA", "--cores", "1", env={"ORDER_OUT": str(out)})
    # With one worker the queue order is the plugin's order (see docs/plugins.md for N workers).
    assert out.read_text().split() == ["a", "b", "c", "a", "b", "c"]
    assert parallel.short() == serial.short()


XDIST_PROTOCOL_CONFTEST = """
import json, os
import pytest

def pytest_configure_node(node):
    node.workerinput["from_configure_node"] = node.gateway.id

@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session):
    config = session.config
    if hasattr(config, "workeroutput"):
        config.workeroutput["seen"] = {
            "env": [os.environ.get("PYTEST_XDIST_WORKER"), os.environ.get("PYTEST_XDIST_WORKER_COUNT"),
                    os.environ.get("PYTEST_XDIST_TESTRUNUID")],
            "workerinput": config.workerinput.get("from_configure_node"),
        }

def pytest_testnodedown(node, error):
    with open(os.environ["NODES_OUT"], "a") as f:
        f.write(json.dumps([node.gateway.id, node.workerinput["workerid"], node.workeroutput.get("seen"), error]) + "\\n")

@pytest.fixture
def ids(worker_id, testrun_uid):
    return worker_id, testrun_uid
"""
XDIST_PROTOCOL_TESTS = """
import os, pytest

@pytest.mark.parametrize("i", range(6))
def test_ids(ids, i):
    with open(os.environ["IDS_OUT"], "a") as f:
        f.write(" ".join(ids) + "\\n")
"""


@pytest.mark.parametrize("xdist", ["as installed", "disabled"])
def test_xdist_plugin_protocol(python, tmp_path, xdist):
    write(tmp_path, {"conftest.py": XDIST_PROTOCOL_CONFTEST, "test_x.py": XDIST_PROTOCOL_TESTS})
    nodes_out, ids_out = tmp_path / "nodes.txt", tmp_path / "ids.txt"
    extra = ("-p", "no:xdist") if xdist == "disabled" else ()
    run = pytest_in(python, tmp_path, "--cores", "2", *extra, env={"NODES_OUT": str(nodes_out), "IDS_OUT": str(ids_out)})
    assert run.summary == "6 passed", run.out
    rows = sorted(json.loads(l) for l in nodes_out.read_text().splitlines())
    assert [r[0] for r in rows] == ["gw0", "gw1"] and [r[1] for r in rows] == ["gw0", "gw1"]
    uids = {r[2]["env"][2] for r in rows}
    for gid, _, seen, error in rows:
        assert error is None
        assert seen["env"][:2] == [gid, "2"]
        assert seen["workerinput"] == gid, "pytest_configure_node's additions reach the worker"
    ids = [l.split() for l in ids_out.read_text().splitlines()]
    assert {w for w, _ in ids} <= {"gw0", "gw1"} and len(ids) == 6
    assert {u for _, u in ids} == uids and len(uids) == 1, "one testrun_uid for the whole run"
    # Serially: worker_id is "master".
    ids_out.unlink()
    serial = pytest_in(python, tmp_path, *extra, env={"NODES_OUT": str(nodes_out), "IDS_OUT": str(ids_out)})
    assert serial.summary == "6 passed"
    assert {l.split()[0] for l in ids_out.read_text().splitlines()} == {"master"}


def test_report_attributes_set_by_plugins_arrive_at_the_main(python, tmp_path):
    write(tmp_path, {"conftest.py": "import pytest, json, os\n"
                                    "@pytest.hookimpl(hookwrapper=True)\n"
                                    "def pytest_runtest_makereport(item, call):\n"
                                    "    rep = (yield).get_result()\n"
                                    "    rep.my_extra = {'pid_parity': 'yes', 'when': rep.when}\n"
                                    "def pytest_runtest_logreport(report):\n"
                                    "    if os.environ.get('PTMPROC_WORKER'):\n        return\n"
                                    "    with open(os.environ['EXTRA_OUT'], 'a') as f:\n"
                                    "        f.write(json.dumps(getattr(report, 'my_extra', None)) + '\\n')\n",
                     "test_e.py": "def test_a():\n    pass\n"})
    out = tmp_path / "extra.txt"
    run = pytest_in(python, tmp_path, "--cores", "2", env={"EXTRA_OUT": str(out)})
    assert run.summary == "1 passed"
    got = [json.loads(l) for l in out.read_text().splitlines()]
    assert got == [{"pid_parity": "yes", "when": w} for w in ("setup", "call", "teardown")]


HOOKS_CONFTEST = """
import json, os

def _log(*row):
    with open(os.environ["HOOKS_OUT"], "a") as f:
        f.write(json.dumps(row) + "\\n")

def pytest_mproc_worker_started(config, worker_id, pid, node):
    _log("started", worker_id)

def pytest_mproc_worker_crashed(config, worker_id, pid, nodeid, exit_status, stderr_tail, node):
    _log("crashed", worker_id, nodeid, exit_status)
"""


def test_pytest_mproc_hooks_see_workers_start_and_crash(python, tmp_path):
    write(tmp_path, {"conftest.py": HOOKS_CONFTEST,
                     "test_h.py": "import os, signal\ndef test_boom():\n    os.kill(os.getpid(), signal.SIGKILL)\n"
                                  "def test_ok():\n    pass\n"})
    out = tmp_path / "hooks.txt"
    run = pytest_in(python, tmp_path, "--cores", "1", env={"HOOKS_OUT": str(out)})
    assert run.summary == "1 failed, 1 passed", run.out
    rows = [json.loads(l) for l in out.read_text().splitlines()]
    assert rows[0] == ["started", "gw0"]
    assert ["crashed", "gw0", "test_h.py::test_boom", "killed by SIGKILL (signal 9)"] in rows
    assert ["started", "gw1"] in rows, "the replacement worker"


def test_subtests_and_syrupy_through_the_bridge(python, tmp_path):
    write(tmp_path, {"test_sub.py": SUBTESTS, "test_snap.py": "VALUE = 1\n" + SNAPSHOTS})
    serial = pytest_in(python, tmp_path, "-rA", "--snapshot-update")
    cluster = Cluster(tmp_path, "cd" * 16, python=python)
    try:
        main = cluster.main("-rA", "-p", "no:randomly")
        node = cluster.node("a", "-p", "no:randomly", cores=2)
        assert main.wait() == 1, main.text()
        assert node.wait() == 0, node.text()
        text = main.text()
    finally:
        cluster.close()
    multi = Run(subprocess.CompletedProcess([], 1, text, ""))
    assert multi.short() == serial.short()
    assert multi.summary == re.sub(r", 5 snapshots generated.*", "", serial.summary)
    assert multi.section("snapshot report summary") == ["5 snapshots passed."]


def test_handlecrashitem_can_run_a_crashed_test_again(python, tmp_path):
    write(tmp_path, {"conftest.py": "def pytest_handlecrashitem(crashitem, report, sched):\n"
                                    "    report.outcome = 'rerun'\n"
                                    "    sched.mark_test_pending(crashitem)\n",
                     "test_c.py": "import os, signal\n"
                                  "def test_crashes_once(tmp_path_factory):\n"
                                  "    marker = os.path.join(os.environ['CRASH_DIR'], 'crashed')\n"
                                  "    if not os.path.exists(marker):\n"
                                  "        open(marker, 'w').close()\n"
                                  "        os.kill(os.getpid(), signal.SIGKILL)\n"})
    run = pytest_in(python, tmp_path, "--cores", "1", env={"CRASH_DIR": str(tmp_path)})
    assert run.summary == "1 passed, 1 rerun", run.out


def test_timeout_rerun_hypothesis_benchmark_through_the_bridge(python, tmp_path):
    write(tmp_path, {
        "test_to.py": "import time, pytest\n@pytest.mark.timeout(1)\ndef test_slow():\n    time.sleep(30)\n",
        "test_rr.py": RERUN,
        "test_hyp.py": "from hypothesis import given, strategies as st\n"
                       "@given(st.integers())\ndef test_int(x):\n    assert isinstance(x, int)\n",
        "test_bench.py": "def test_sum(benchmark):\n    benchmark(sum, range(50))\n",
    })
    args = ("-rA", "--hypothesis-show-statistics", "--benchmark-max-time=0.05")
    (tmp_path / "s").mkdir(), (tmp_path / "m").mkdir()
    serial = pytest_in(python, tmp_path, *args, env={"RR_DIR": str(tmp_path / "s")})
    cluster = Cluster(tmp_path, "ab" * 16, python=python)
    try:
        main = cluster.main(*args, "-p", "no:randomly", env={"RR_DIR": str(tmp_path / "m")})
        node = cluster.node("a", "-p", "no:randomly", cores=2, env={"RR_DIR": str(tmp_path / "m")})
        assert main.wait() == 1, main.text()
        assert node.wait() == 0, node.text()
        multi = Run(subprocess.CompletedProcess([], 1, main.text(), ""))
    finally:
        cluster.close()
    assert serial.summary.endswith(", 1 rerun"), serial.out
    assert multi.summary == serial.summary, (serial.short(), multi.short())
    assert multi.short() == serial.short()
    assert "Failed: Timeout (>1.0s) from pytest-timeout" in multi.out
    assert "test_hyp.py::test_int:" in multi.section("Hypothesis Statistics")
    assert re.search(r"^test_sum\s", multi.out, re.M), "the benchmark table"
