"""Multi-host runs for real: a main and worker nodes as separate process trees over TCP on
127.0.0.x (see cluster.py), each behaviour checked at the main's report and in a ledger the
tests write on whichever node runs them."""

from __future__ import annotations

import os
import re
import signal
import time
from collections import Counter

import pytest

from cluster import LEDGER_CONFTEST, Cluster, ledger_rows

TOKEN = "5e" * 32


@pytest.fixture
def cluster(pytester, monkeypatch):
    ledger = pytester.path / "ledger.txt"
    monkeypatch.setenv("LEDGER", str(ledger))
    pytester.makeconftest(LEDGER_CONFTEST)
    c = Cluster(pytester.path, TOKEN)
    c.ledger = ledger
    yield c
    c.close()


def suite(pytester, n=30, extra=""):
    pytester.makepyfile(test_suite=f"""
import time
import pytest

@pytest.mark.parametrize("i", range({n}))
def test_work(i):
    time.sleep(0.03)

def test_fails():
    assert 1 == 2
{extra}
""")


def run_with_nodes(cluster, *main_args: str, nodes=(("a", 2),), rc: int = 1, nodes_first: bool = False) -> str:
    """Runs a main and worker nodes (name, cores) to their end; the main's output. With
    `nodes_first` every node is waiting before the main starts, so all of them get work."""
    gate = {"MPROC_TEST_NODES": ",".join(name for name, _ in nodes), "MPROC_TEST_NODES_DIR": str(cluster.path)}
    if nodes_first:
        cluster.reserve()
        procs = [cluster.node(name, cores=cores, ready=True, env=gate) for name, cores in nodes]
        main = cluster.main(*main_args, port=cluster.port)
    else:
        main = cluster.main(*main_args)
        procs = [cluster.node(name, cores=cores, env=gate) for name, cores in nodes]
    assert main.wait() == rc, main.text()
    for proc in procs:
        assert proc.wait() == 0, proc.text()
    return main.text()


def outcome_counts(text: str) -> dict[str, int]:
    last = [l for l in text.splitlines() if re.search(r"\d+ (passed|failed)", l)][-1]
    return {k: int(v) for v, k in re.findall(r"(\d+) (passed|failed|errors|error)", last)}


def test_two_nodes_two_cores_each_run_every_test_once_reported_at_the_main(pytester, cluster):
    suite(pytester, 40)
    text = run_with_nodes(cluster, "-rA", "--junitxml", str(pytester.path / "junit.xml"),
                          nodes=(("a", 2), ("b", 2)), nodes_first=True)
    assert outcome_counts(text) == {"passed": 40, "failed": 1}
    assert "FAILED test_suite.py::test_fails" in text
    assert len(re.findall(r"^PASSED test_suite.py::test_work", text, re.M)) == 40
    rows = ledger_rows(cluster.ledger)
    assert Counter(r[0] for r in rows) == Counter({f"test_suite.py::test_work[{i}]": 1 for i in range(40)}
                                                  | {"test_suite.py::test_fails": 1})
    assert {r[1] for r in rows} == {"a", "b"}, "both nodes took work"
    assert len({r[2] for r in rows if r[1] == "a"}) <= 2 and len({r[2] for r in rows}) >= 3
    junit = (pytester.path / "junit.xml").read_text()
    assert junit.count("<testcase") == 41


def test_main_with_cores_runs_local_workers_and_needs_no_node(pytester, cluster):
    suite(pytester, 10)
    main = cluster.main("--cores", "2")
    assert main.wait() == 1, main.text()
    assert outcome_counts(main.text()) == {"passed": 10, "failed": 1}
    assert {r[1] for r in ledger_rows(cluster.ledger)} == {"main"}


def test_wrong_token_is_refused_and_the_run_goes_on(pytester, cluster):
    suite(pytester, 10)
    main = cluster.main()
    intruder = cluster.node("intruder", env={"PTMPROC_AUTH_TOKEN": "00" * 32})
    assert intruder.wait() == 2
    assert "wrong auth token" in intruder.text()
    good = cluster.node("good")
    assert main.wait() == 1 and good.wait() == 0, main.text()
    assert outcome_counts(main.text()) == {"passed": 10, "failed": 1}
    assert re.search(r"pytest-mproc: refused .*wrong auth token", main.text())
    assert {r[1] for r in ledger_rows(cluster.ledger)} == {"good"}


def test_a_node_with_a_different_collection_is_refused(pytester, cluster, tmp_path_factory):
    suite(pytester, 10)
    other = tmp_path_factory.mktemp("other")
    (other / "conftest.py").write_text(LEDGER_CONFTEST)
    (other / "test_suite.py").write_text("def test_work():\n    pass\n\ndef test_only_here():\n    pass\n")
    main = cluster.main()
    odd = cluster.node("odd", cwd=other)
    assert odd.wait() == 2
    assert re.search(r"collection differs .*missing on the node: test_suite.py::test_work\[0\].*"
                     r"only on the node: .*test_suite.py::test_only_here", odd.text())
    good = cluster.node("good")
    assert main.wait() == 1 and good.wait() == 0
    assert "collection differs" in main.text()
    assert outcome_counts(main.text()) == {"passed": 10, "failed": 1}


def test_a_node_killed_mid_run_its_tests_go_to_another_node(pytester, cluster):
    # test_a_blocks is first in the queue; the victim node (one worker) takes it and prefetches
    # more; it is SIGKILLed while running test_a_blocks.
    pytester.makepyfile(test_a_blocks="""
import time
def test_a_blocks():
    time.sleep(120)
""")
    suite(pytester, 30)
    main = cluster.main("-rA", env={"PTMPROC_VERBOSE": "1"})
    victim = cluster.node("victim", cores=1)
    # The coordinator logs what each node reports running: once it shows test 0, the main knows;
    # and the test has started there (its ledger line is written: a slow machine may still be
    # between the lease and the test's set-up when the coordinator hears of it).
    main.wait_for(r"node \d+ \(\S+\) running \[0\]", timeout=60)
    deadline = time.monotonic() + 60
    while not any(r[1] == "victim" for r in ledger_rows(cluster.ledger)):
        assert time.monotonic() < deadline, main.text()
        time.sleep(0.02)
    victim.kill()
    survivor = cluster.node("survivor")
    assert main.wait() == 1, main.text()
    assert survivor.wait() == 0, survivor.text()
    text = main.text()
    assert outcome_counts(text) == {"passed": 30, "failed": 2}
    assert re.search(r"^FAILED test_a_blocks.py::test_a_blocks", text, re.M)
    assert re.search(r"_ test_a_blocks _+\nnode \S+ was lost: connection closed; "
                     r"this test was running there and is not run again", text)
    assert "lost node" in text
    rows = ledger_rows(cluster.ledger)
    assert Counter(r[0] for r in rows if r[1] == "survivor") == Counter(
        {f"test_suite.py::test_work[{i}]": 1 for i in range(30)} | {"test_suite.py::test_fails": 1})
    assert [r[0] for r in rows if r[1] == "victim"] == ["test_a_blocks.py::test_a_blocks"]
    for i in range(30):
        assert len(re.findall(rf"^PASSED test_suite.py::test_work\[{i}\]$", text, re.M)) == 1


def test_main_killed_leaves_no_process_behind_within_10_seconds(pytester, cluster):
    pytester.makepyfile(test_slow="""
import time
import pytest
@pytest.mark.parametrize("i", range(20))
def test_slow(i):
    time.sleep(30)
""")
    main = cluster.main("--cores", "1")
    cluster.node("a")
    cluster.node("b")
    deadline = time.monotonic() + 60
    while len({r[1] for r in ledger_rows(cluster.ledger)}) < 3 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert {r[1] for r in ledger_rows(cluster.ledger)} == {"main", "a", "b"}
    before = cluster.alive()
    assert len(before) >= 3 + 2 * (1 + 1 + 1 + 2)  # main, its local node tree, two node trees
    os.kill(main.pid, signal.SIGKILL)
    t0 = time.monotonic()
    while cluster.alive() and time.monotonic() - t0 < 10:
        time.sleep(0.05)
    assert cluster.alive() == [], f"still alive 10 s after the main was killed: {cluster.alive()}"


def test_no_node_ever_connects_ends_with_the_tests_not_run(pytester, cluster):
    suite(pytester, 3)
    main = cluster.main("--mproc-node-wait", "1")
    assert main.wait() == 2
    assert re.search(r"no worker node connected for 1 s; 4 tests not run: test_suite.py::test_work\[0\]", main.text())


def test_a_worker_node_gives_up_when_the_main_is_unreachable(pytester, cluster):
    suite(pytester, 1)
    node = cluster.node("lonely", "--mproc-connect-timeout", "1", address="127.0.0.1:9")
    assert node.wait() == 2
    assert re.search(r"could not connect to the main at 127.0.0.1:9 within 1 s", node.text())


def test_global_fixture_once_per_run_node_fixture_once_per_node(pytester, cluster):
    log = pytester.path / "setups.txt"
    pytester.makepyfile(test_fx=f"""
import os
import pytest
from pytest_mproc.fixtures import global_fixture, node_fixture

def note(what):
    with open({str(log)!r}, "a") as f:
        f.write(what + " " + os.environ.get("NODE_NAME", "main") + "\\n")

@global_fixture()
def shared_db():
    note("global")
    yield "db-url"
    note("global-teardown")

@node_fixture()
def node_cache(shared_db):
    note("node")
    return shared_db + "/cache"

@pytest.mark.parametrize("i", range(24))
def test_uses(i, node_cache, shared_db):
    assert node_cache == "db-url/cache" and shared_db == "db-url"
""")
    text = run_with_nodes(cluster, nodes=(("a", 2), ("b", 2)), rc=0, nodes_first=True)
    rows = [l.split() for l in log.read_text().splitlines()]
    assert Counter(tuple(r) for r in rows) == Counter({("global", "main"): 1, ("global-teardown", "main"): 1,
                                                       ("node", "a"): 1, ("node", "b"): 1})
    assert outcome_counts(text) == {"passed": 24}


def test_single_node_group_runs_on_one_node_spread_over_its_workers(pytester, cluster):
    pytester.makepyfile(test_grp="""
import time
import pytest
import pytest_mproc
from pytest_mproc import GroupTag, TestExecutionConstraint

TAG = GroupTag("together", restrict_to=TestExecutionConstraint.SINGLE_NODE)

@pytest_mproc.group(TAG)
@pytest.mark.parametrize("i", range(12))
def test_grouped(i):
    time.sleep(0.05)

@pytest.mark.parametrize("i", range(20))
def test_free(i):
    time.sleep(0.02)
""")
    run_with_nodes(cluster, nodes=(("a", 2), ("b", 2)), rc=0, nodes_first=True)
    rows = ledger_rows(cluster.ledger)
    grouped = [r for r in rows if "test_grouped" in r[0]]
    assert len(grouped) == 12
    assert len({r[1] for r in grouped}) == 1, f"group split over nodes: {grouped}"
    assert len({r[2] for r in grouped}) == 2, "spread over the node's two workers"


def test_standalone_orchestration_main_serves_main_and_nodes(pytester, cluster):
    import socket
    import subprocess
    import sys

    suite(pytester, 12)
    with socket.socket() as s:
        s.bind(("127.0.0.4", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-c", f"import pytest_mproc; pytest_mproc.orchestration.main('127.0.0.4', {port}, "
                               f"bytes.fromhex({TOKEN!r}))"],
        start_new_session=True)
    try:
        address = f"127.0.0.4:{port}"
        node = cluster.node("a", address=address)  # may come before the main
        main = cluster.spawn(["--as-main", address, "-rA"], "main")
        assert main.wait() == 1, main.text()
        assert node.wait() == 0, node.text()
        assert outcome_counts(main.text()) == {"passed": 12, "failed": 1}
        assert server.wait(30) == 0, "the server ends after its main left"
    finally:
        server.kill()
    assert {r[1] for r in ledger_rows(cluster.ledger)} == {"a"}


@pytest.mark.parametrize(
    "args, message",
    [
        (["--as-worker", "127.0.0.1:1"], "--as-worker needs --cores N"),
        (["--as-worker", "127.0.0.1", "--cores", "1"], "--as-worker: expected HOST:PORT"),
        (["--as-main", "127.0.0.1:99999"], "--as-main: invalid port '99999'"),
        (["--as-main", "127.0.0.1:1", "--as-worker", "127.0.0.1:1", "--cores", "1"], "cannot be combined"),
    ],
)
def test_usage_errors(pytester, args, message):
    pytester.makepyfile("def test_x(): pass")
    result = pytester.runpytest_subprocess(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert message in result.stderr.str()
    assert "Traceback" not in result.stderr.str()


def test_worker_without_token_is_a_usage_error(pytester, monkeypatch):
    monkeypatch.delenv("PTMPROC_AUTH_TOKEN", raising=False)
    pytester.makepyfile("def test_x(): pass")
    result = pytester.runpytest_subprocess("--as-worker", "127.0.0.1:1", "--cores", "1")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "no auth token: set PTMPROC_AUTH_TOKEN" in result.stderr.str()


def test_main_without_token_prints_one_and_a_callback_token_is_used(pytester, monkeypatch):
    monkeypatch.delenv("PTMPROC_AUTH_TOKEN", raising=False)
    pytester.makepyfile("def test_x(): pass")
    c = Cluster(pytester.path, "")
    try:
        main = c.spawn(["--as-main", "127.0.0.1", "--cores", "1"], "main", env={"PTMPROC_AUTH_TOKEN": ""})
        m = main.wait_for(r"PTMPROC_AUTH_TOKEN=([0-9a-f]{64})")
        assert main.wait() == 0, main.text()
        assert len(bytes.fromhex(m.group(1))) == 32
    finally:
        c.close()
    pytester.makeconftest("import pytest_mproc\npytest_mproc.set_user_defined_auth_token(lambda: b'from-callback')\n")
    c = Cluster(pytester.path, "")
    try:
        main = c.spawn(["--as-main", "127.0.0.1", "--cores", "1"], "main2", env={"PTMPROC_AUTH_TOKEN": ""})
        assert main.wait() == 0, main.text()
        assert "PTMPROC_AUTH_TOKEN=" not in main.text()
    finally:
        c.close()


def test_a_worker_crash_on_a_node_is_reported_at_the_main_and_the_node_goes_on(pytester, cluster):
    pytester.makepyfile(test_crash="""
import os
import pytest

def test_dies():
    import faulthandler
    faulthandler._sigsegv()

@pytest.mark.parametrize("i", range(10))
def test_after(i):
    pass
""")
    text = run_with_nodes(cluster, "-rA", nodes=(("a", 1),))
    assert outcome_counts(text) == {"passed": 10, "failed": 1}
    assert re.search(r"worker gw0 on node \S+ \(pid \d+\) crashed while running this test: killed by SIGSEGV", text)
    assert "Fatal Python error: Segmentation fault" in text and "test_dies" in text


def _netns(name: str, subnet: int) -> None:
    import subprocess

    def ip(*args):
        subprocess.run(["ip", *args], check=True, capture_output=True)

    ip("netns", "add", name)
    ip("link", "add", f"{name}-h", "type", "veth", "peer", "name", f"{name}-n")
    ip("link", "set", f"{name}-n", "netns", name)
    ip("addr", "add", f"10.{subnet}.0.1/24", "dev", f"{name}-h")
    ip("link", "set", f"{name}-h", "up")
    ip("netns", "exec", name, "ip", "addr", "add", f"10.{subnet}.0.2/24", "dev", f"{name}-n")
    ip("netns", "exec", name, "ip", "link", "set", f"{name}-n", "up")
    ip("netns", "exec", name, "ip", "link", "set", "lo", "up")


@pytest.fixture
def namespaces():
    """Two network namespaces, each joined to this host by a veth pair: [(name, subnet)]; the
    host side of namespace k is 10.<subnet>.0.1, its inside 10.<subnet>.0.2."""
    import subprocess

    if os.geteuid() != 0:
        pytest.skip("network namespaces need root")
    names = [f"mp{os.getpid() % 10000}a", f"mp{os.getpid() % 10000}b"]
    subnets = [200 + os.getpid() % 25, 225 + os.getpid() % 25]
    try:
        for name, subnet in zip(names, subnets):
            _netns(name, subnet)
    except (subprocess.CalledProcessError, FileNotFoundError) as e:
        for name in names:
            subprocess.run(["ip", "netns", "del", name], capture_output=True)
        pytest.skip(f"cannot create network namespaces here: {e}")
    yield list(zip(names, subnets))
    for name in names:
        subprocess.run(["ip", "netns", "del", name], capture_output=True)
        subprocess.run(["ip", "link", "del", f"{name}-h"], capture_output=True)


def _ns_node(cluster, k: int, name: str, subnet: int, **kw):
    return cluster.node(f"ns{k}", address=f"10.{subnet}.0.1:{cluster.port}", prefix=["ip", "netns", "exec", name], **kw)


def test_nodes_in_network_namespaces(pytester, cluster, namespaces):
    """Two worker nodes, each in its own network namespace (own stack, reached over a veth)."""
    suite(pytester, 30)
    cluster.reserve("0.0.0.0")
    nodes = [_ns_node(cluster, k, name, subnet, ready=True) for k, (name, subnet) in enumerate(namespaces)]
    main = cluster.main("-rA", host="0.0.0.0", port=cluster.port, env={"PTMPROC_VERBOSE": "1"})
    assert main.wait() == 1, main.text()
    for n in nodes:
        assert n.wait() == 0, n.text()
    assert outcome_counts(main.text()) == {"passed": 30, "failed": 1}
    rows = ledger_rows(cluster.ledger)
    assert Counter(r[0] for r in rows) == Counter(
        {f"test_suite.py::test_work[{i}]": 1 for i in range(30)} | {"test_suite.py::test_fails": 1})
    assert {r[1] for r in rows} == {"ns0", "ns1"}
    # The peers the main saw were the namespaces' own addresses, not loopback.
    peers = re.findall(r"Joined \{.*peer: \"10\.(\d+)\.0\.2:\d+\"", main.text())
    assert sorted(int(p) for p in peers) == sorted(s for _, s in namespaces)


def test_a_partitioned_node_is_detected_by_silence_on_both_sides(pytester, cluster, namespaces):
    """The link to a node goes down (no FIN, no RST: the connection just falls silent). The main
    declares the node lost after its silence limit and gives its work to the other node; the
    node's bridge gives up on the silent main and the node ends its workers."""
    import subprocess

    pytester.makepyfile(test_a_blocks="""
import time
def test_a_blocks():
    time.sleep(120)
""")
    suite(pytester, 20)
    (victim_ns, victim_subnet), (other_ns, other_subnet) = namespaces
    cluster.reserve("0.0.0.0")
    main = cluster.main("-rA", host="0.0.0.0", port=cluster.port, env={"PTMPROC_VERBOSE": "1"})
    victim = _ns_node(cluster, 0, victim_ns, victim_subnet, cores=1)
    main.wait_for(r"node \d+ \(\S+\) running \[0\]", timeout=60)
    subprocess.run(["ip", "link", "set", f"{victim_ns}-h", "down"], check=True)
    other = _ns_node(cluster, 1, other_ns, other_subnet)
    assert main.wait(120) == 1, main.text()
    assert other.wait() == 0, other.text()
    text = main.text()
    assert outcome_counts(text) == {"passed": 20, "failed": 2}
    assert re.search(r"node \S+ was lost: silent for 10 s; this test was running there", text)
    assert victim.wait(30) == 2
    assert "lost the main: silent for 5 s" in victim.text()


def _free_port(host: str) -> int:
    import socket

    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def test_port_from_the_allocation_callback_or_the_environment(pytester, cluster):
    suite(pytester, 2)
    port = _free_port("127.0.0.2")
    pytester.makeconftest(LEDGER_CONFTEST + f"\nimport pytest_mproc\npytest_mproc.set_user_defined_port_alloc(lambda: {port})\n")
    main = cluster.main("--cores", "1")
    assert cluster.port == port
    assert main.wait() == 1, main.text()
    env_port = _free_port("127.0.0.2")
    main = cluster.main("--cores", "1", env={"PTMPROC_GLOBALMGR_PORT": str(env_port)})
    assert cluster.port == env_port, "the environment variable wins over the callback"
    assert main.wait() == 1, main.text()


def test_maxfail_stops_every_node(pytester, cluster):
    pytester.makepyfile(test_stop="""
import time
import pytest

def test_a_fails():
    assert 0

@pytest.mark.parametrize("i", range(200))
def test_later(i):
    time.sleep(0.02)
""")
    text = run_with_nodes(cluster, "-x")
    m = re.search(r"pytest-mproc: (\d+) tests not run", text)
    assert m and int(m.group(1)) > 100, text
    assert len(ledger_rows(cluster.ledger)) < 100


def test_a_crash_inside_a_group_on_a_node_runs_the_rest_of_the_group_once(pytester, cluster):
    pytester.makepyfile(test_grp_crash="""
import pytest
import pytest_mproc

@pytest_mproc.group("serial")
class TestSerial:
    def test_1(self):
        pass

    def test_2_dies(self):
        import faulthandler
        faulthandler._sigsegv()

    def test_3(self):
        pass

    def test_4(self):
        pass
""")
    text = run_with_nodes(cluster, "-rA")
    assert outcome_counts(text) == {"passed": 3, "failed": 1}
    assert re.search(r"^FAILED test_grp_crash.py::TestSerial::test_2_dies", text, re.M)
    runs = Counter(r[0] for r in ledger_rows(cluster.ledger))
    assert runs == Counter({f"test_grp_crash.py::TestSerial::{n}": 1 for n in ("test_1", "test_2_dies", "test_3", "test_4")})


def test_ctrl_c_on_the_main_ends_every_node(pytester, cluster):
    pytester.makepyfile(test_slow="""
import time
import pytest
@pytest.mark.parametrize("i", range(8))
def test_slow(i):
    time.sleep(60)
""")
    cluster.reserve()
    node = cluster.node("a", ready=True)
    main = cluster.main(port=cluster.port)
    deadline = time.monotonic() + 60
    while len(ledger_rows(cluster.ledger)) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(ledger_rows(cluster.ledger)) == 2, "both workers of the node are in a test"
    os.kill(main.pid, signal.SIGINT)
    assert main.wait(30) == 2, main.text()
    assert "KeyboardInterrupt" in main.text()
    assert node.wait(30) != 0
    t0 = time.monotonic()
    while cluster.alive() and time.monotonic() - t0 < 10:
        time.sleep(0.05)
    assert cluster.alive() == []


def test_a_failing_global_fixture_errors_its_users_on_every_node(pytester, cluster):
    pytester.makepyfile(test_gfail="""
import pytest
from pytest_mproc.fixtures import global_fixture, node_fixture

@global_fixture()
def broken():
    raise RuntimeError("database unreachable")

@node_fixture()
def per_node(broken):
    return broken

@pytest.mark.parametrize("i", range(4))
def test_uses_global(i, broken):
    pass

@pytest.mark.parametrize("i", range(4))
def test_uses_node(i, per_node):
    pass

def test_independent():
    pass
""")
    text = run_with_nodes(cluster, "-rA")
    assert outcome_counts(text) == {"passed": 1, "errors": 8}
    assert text.count("RuntimeError: database unreachable") >= 8
    assert re.search(r"_ ERROR at setup of test_uses_node\[0\] _", text)


def test_a_multi_host_run_reports_what_a_serial_run_reports(pytester, cluster):
    """The parity suite of test_parity.py: outcomes (-rA lines), junit and exit code at the main
    equal a serial run's."""
    import textwrap

    from conftest import junit_cases, outcome_lines
    from test_parity import SUITE

    pytester.makepyfile(**{k: textwrap.dedent(v) for k, v in SUITE.items()})
    serial = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-rA", "--junitxml=serial.xml")
    serial_runs = Counter(r[0] for r in ledger_rows(cluster.ledger))
    cluster.ledger.unlink()
    text = run_with_nodes(cluster, "-rA", "--junitxml=multi.xml", nodes=(("a", 2), ("b", 1)), rc=serial.ret)

    class Lines:
        outlines = text.splitlines()

    assert outcome_lines(Lines) == outcome_lines(serial)
    assert junit_cases(pytester.path / "multi.xml") == junit_cases(pytester.path / "serial.xml")
    assert "careful now" in text, "warnings summary"
    assert Counter(r[0] for r in ledger_rows(cluster.ledger)) == serial_runs, "every test ran once, as serially"


def _children(pid: int) -> list[int]:
    try:
        return [int(p) for p in open(f"/proc/{pid}/task/{pid}/children").read().split()]
    except OSError:
        return []


def test_a_node_that_stops_reading_is_lost_alone_and_the_others_finish(pytester, cluster):
    # Node "stuck" has its bridge SIGSTOPped mid-run: it neither reads nor heartbeats. The
    # coordinator sends to it without holding up anyone (a socket write under its lock used to
    # stall every node); "healthy" is never declared lost and finishes the run; "stuck" is
    # lost after the 10 s silence limit and what it held is re-queued or reported crashed.
    pytester.makepyfile(test_slowish="""
import time, pytest
@pytest.mark.parametrize("i", range(60))
def test_s(i):
    time.sleep(0.1)
""")
    gate = {"MPROC_TEST_NODES": "healthy,stuck", "MPROC_TEST_NODES_DIR": str(cluster.path)}
    main = cluster.main("-rA")
    healthy = cluster.node("healthy", cores=2, env=gate)
    stuck = cluster.node("stuck", cores=1, env=gate)
    deadline = time.monotonic() + 60
    while not any(r[1] == "stuck" for r in ledger_rows(cluster.ledger)) and time.monotonic() < deadline:
        time.sleep(0.02)  # polling the ledger for the node's first test, bounded
    bridge = [p for p in _children(stuck.pid) if not _children(p)]
    assert len(bridge) == 1, _children(stuck.pid)
    os.kill(bridge[0], signal.SIGSTOP)
    try:
        main.wait()
        assert healthy.wait() == 0, healthy.text()
    finally:
        os.kill(bridge[0], signal.SIGCONT)
    text = main.text()
    # Nodes are named host:pid of their pytest process.
    lost = re.findall(r"lost node \S+:(\d+): (.*)", text)
    assert lost == [(str(stuck.pid), "silent for 10 s")], text
    counts = outcome_counts(text)
    assert sum(counts.values()) == 60 and counts.get("failed", 0) <= 1  # at most the test it was running
    for i in range(60):
        assert len(re.findall(rf"^(PASSED|FAILED) test_slowish.py::test_s\[{i}\]", text, re.M)) == 1
