"""Fleet runs (`--remote-worker`) for real: sshd servers started here on free ports with
throwaway keys (tests/sshd.py), hosts on 127.0.0.x and in network namespaces (tests/netns.py),
the project deployed, installed and run over ssh by the main. Every test of the suites here
appends one line to a ledger (node id, the host's TAG, its worker), so a test can check that
each test ran exactly once and where."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
import uuid
import zipfile
from collections import Counter
from pathlib import Path

import pytest

import netns
import sshd
from fleet_support import (  # noqa: F401 (fixtures)
    BLOCKING_TEST, Project, counts, namespaces, project, remote_processes, servers, shared_cache, ssh_client,
    wait_until_running)

pytestmark = pytest.mark.skipif(sshd.available() is not None, reason=str(sshd.available()))

SUITE = '''
import os, pytest

@pytest.mark.parametrize("i", range(24))
def test_work(i):
    pass

def test_fails():
    assert 0

def test_environment(request):
    # Each host's own arguments, whichever host runs this (serial: DEVICE=devS, --flavor spicy).
    tag = os.environ.get("TAG")
    assert os.environ["DEVICE"] == {"A": "devA", "B": "devB"}.get(tag, os.environ["DEVICE"])
    assert os.environ["DEVICE"].startswith("dev")
    assert request.config.getoption("--flavor") == {"B": "mild"}.get(tag, "spicy")
    assert os.path.isabs(os.environ["PTMPROC_WORKER_ARTIFACTS_DIR"])
    assert os.path.isdir(os.environ["PTMPROC_WORKER_ARTIFACTS_DIR"])
'''


def test_two_hosts_run_every_test_once_with_their_arguments(project, servers):
    """Two hosts, each with its own arguments (UPPER_CASE -> environment, lower -> option);
    prepare and finalize run on each; the main's outcomes are the serial run's and every test
    ran exactly once, some on each host (tests on each wait until one ran on the other)."""
    project.write(SUITE, prepare='echo "prepared $TAG $DEVICE" > "$MARKS/prepare-$TAG"\n',
                  finalize='echo "finalized $TAG" > "$MARKS/finalize-$TAG"\n')
    a, b = servers("127.0.0.3"), servers("127.0.0.4")
    main = project.main("-q", "--cores", "2",
                        "--remote-worker", project.host(a, "A", DEVICE="devA", flavor="spicy", WAIT_FOR="B"),
                        "--remote-worker", project.host(b, "B", DEVICE="devB", flavor="mild", WAIT_FOR="A"))
    assert main.wait() == 1, main.text()
    text = main.text()
    assert counts(text) == {"passed": 25, "failed": 1} == project.serial("--flavor", "spicy")
    rows = project.rows()
    assert Counter(r[0] for r in rows) == Counter(
        {f"tests/test_suite.py::test_work[{i}]": 1 for i in range(24)}
        | {"tests/test_suite.py::test_fails": 1, "tests/test_suite.py::test_environment": 1})
    assert {r[1] for r in rows} == {"A", "B"}
    for tag, dev in (("A", "devA"), ("B", "devB")):
        assert (project.marks / f"prepare-{tag}").read_text() == f"prepared {tag} {dev}\n"
        assert (project.marks / f"finalize-{tag}").read_text() == f"finalized {tag}\n"
    # The summary: one line per host with the tests its node was handed.
    per_host = {int(n): int(t) for n, t in re.findall(r"^Worker-(\d) \S+: (\d+) tests on \d workers?", text, re.M)}
    assert sum(per_host.values()) == 26, text
    for n, tag in ((0, "A"), (1, "B")):
        assert per_host.get(n, 0) == Counter(r[1] for r in rows)[tag]
    # Run directories are removed; per-host logs are on the main.
    assert list(project.tmp_root.iterdir()) == []
    for n in (0, 1):
        assert (project.path / "artifacts" / f"Worker-{n}" / "pytest.log").exists()
    # The token never appears in the main's output (it travels on ssh's stdin).
    assert "PTMPROC_AUTH_TOKEN=" not in text


def test_cores_argument_overrides_cores_for_that_host(project, servers):
    project.write(SUITE)
    a = servers("127.0.0.3")
    main = project.main("-q", "--cores", "2", "--remote-worker",
                        project.host(a, "A", DEVICE="devA", flavor="spicy", cores=1))
    assert main.wait() == 1, main.text()
    assert re.search(r"Worker-0 127\.0\.0\.3:\d+: 1 worker up", main.text()), main.text()
    assert {r[2] for r in project.rows()} == {"gw0"}
    assert re.search(r"^Worker-0 \S+: 26 tests on 1 worker,", main.text(), re.M)


def test_second_run_uses_the_cache_and_requirements_come_from_a_shipped_wheel(tmp_path, ssh_client, servers):
    """A fresh cache: the first run sends the bundle and installs the venv (requirements.txt
    naming a wheel shipped in the bundle, no index); the second sends nothing and runs no pip."""
    project = Project(tmp_path / "proj", tmp_path / "fresh-cache", ssh_client)
    wheel = tmp_path / "mylib-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr("mylib.py", "ANSWER = 42\n")
        z.writestr("mylib-1.0.dist-info/METADATA", "Metadata-Version: 2.1\nName: mylib\nVersion: 1.0\n")
        z.writestr("mylib-1.0.dist-info/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        z.writestr("mylib-1.0.dist-info/RECORD", "")
    project.write('''
        def test_uses_mylib():
            import mylib
            assert mylib.ANSWER == 42
        ''', requirements="--no-index\n--find-links wheels\nmylib==1.0\n",
                  files={"wheels/mylib-1.0-py3-none-any.whl": wheel.read_bytes()})
    a = servers("127.0.0.5")
    first = project.main("-q", "--cores", "1", "--remote-worker", project.host(a, "A"))
    assert first.wait() == 0, first.text()
    assert re.search(r"Worker-0 \S+: bundle sent runtime [\d.]+ MB, bundle", first.text())
    assert "venv installed" in first.text()
    venvs = list((project.cache / "fleetdemo").glob("venv-*"))
    assert len(venvs) == 1
    stamp = (venvs[0] / ".complete").stat().st_mtime_ns
    # What no run used for 14 days is pruned from the host's cache; what is used stays.
    month_ago = time.time() - 30 * 86400
    stale_blob = project.cache / "fleetdemo" / "blobs" / ("0" * 64 + ".tar")
    stale_blob.write_bytes(b"old")
    os.utime(stale_blob, (month_ago, month_ago))
    stale_venv = project.cache / "fleetdemo" / "venv-0000000000000000-py3.0"
    stale_venv.mkdir()
    (stale_venv / ".last_used").touch()
    os.utime(stale_venv / ".last_used", (month_ago, month_ago))
    used_blobs = sorted(p.name for p in (project.cache / "fleetdemo" / "blobs").glob("*.tar") if p != stale_blob)
    for p in (project.cache / "fleetdemo" / "blobs").glob("*.tar"):
        if p != stale_blob:
            os.utime(p, (month_ago, month_ago))  # old, but used by this run: kept
    second = project.main("-q", "--cores", "1", "--remote-worker", project.host(a, "A"))
    assert second.wait() == 0, second.text()
    assert "Worker-0" in second.text() and "bundle cached" in second.text() and "venv cached" in second.text()
    assert (venvs[0] / ".complete").stat().st_mtime_ns == stamp
    assert counts(second.text()) == {"passed": 1}
    assert not stale_blob.exists() and not stale_venv.exists()
    assert sorted(p.name for p in (project.cache / "fleetdemo" / "blobs").glob("*.tar")) == used_blobs
    assert venvs[0].exists()


def test_a_failing_prepare_script_excludes_only_that_host(project, servers):
    # Q's tests wait until P's prepare_script ran (it leaves a mark), so P fails while there is
    # still work, whatever the two hosts' start-up times.
    project.write(SUITE.replace("spicy", "plain"), prepare='''
        touch "$MARKS/prepare-ran-$TAG"
        if [ "$DEVICE" = "devbad" ]; then echo "device $DEVICE is offline" >&2; exit 3; fi
        ''')
    a, b = servers("127.0.0.3"), servers("127.0.0.4")
    main = project.main("-q", "--cores", "2", "--remote-worker", project.host(a, "P", DEVICE="devbad"),
                        "--remote-worker", project.host(b, "Q", DEVICE="devgood",
                                                        WAIT_FOR_MARK=str(project.marks / "prepare-ran-P")))
    assert main.wait() == 1, main.text()
    text = main.text()
    assert re.search(r"Worker-0 127\.0\.0\.3:\d+: cannot take part: prepare_script exited with 3: device devbad is offline", text)
    assert counts(text) == {"passed": 25, "failed": 1}
    assert {r[1] for r in project.rows()} == {"Q"}


def test_an_unreachable_host_is_named_and_the_others_run(project, servers):
    project.write(SUITE.replace("spicy", "plain"))
    a = servers("127.0.0.3")
    dead_port = sshd.free_port("127.0.0.6")
    main = project.main("-q", "--cores", "2", "--remote-worker", f"127.0.0.6:{dead_port};DEVICE=dev0",
                        "--remote-worker", project.host(a, "A", DEVICE="devA"))
    assert main.wait() == 1, main.text()
    assert re.search(rf"Worker-0 127\.0\.0\.6:{dead_port}: cannot take part: ssh: .*Connection refused", main.text())
    assert counts(main.text()) == {"passed": 25, "failed": 1}


def test_no_usable_host_ends_the_run_naming_the_tests_not_run(project):
    project.write("def test_one():\n    pass\n")
    port = sshd.free_port("127.0.0.6")
    main = project.main("-q", "--cores", "1", "--remote-worker", f"127.0.0.6:{port}")
    assert main.wait() == 2, main.text()
    assert "no host of --remote-worker could take part; 1 tests not run: tests/test_suite.py::test_one" in main.text()


def test_unknown_host_key_is_refused_not_trusted(project, tmp_path, ssh_client):
    """Host keys are checked as ssh checks them: a server not in known_hosts is refused."""
    project.write("def test_one():\n    pass\n")
    stranger = sshd.Server(tmp_path / "stranger", ssh_client, host="127.0.0.7").start()
    try:
        main = project.main("-q", "--cores", "1", "--remote-worker", stranger.address)
        assert main.wait() == 2, main.text()
        assert re.search(r"cannot take part: ssh: .*Host key verification failed", main.text())
    finally:
        stranger.stop()


def test_ctrl_c_ends_every_remote_process_and_finalize_runs(project, servers):
    project.write(BLOCKING_TEST, finalize='echo done > "$MARKS/finalize-$TAG"\n')
    a = servers("127.0.0.3")
    main = project.main("-q", "--cores", "1", "--remote-worker", project.host(a, "A"))
    wait_until_running(project, main)
    assert remote_processes(project.tag), "the remote test process carries RUN_TAG"
    os.kill(main.pid, signal.SIGINT)
    assert main.wait(90) == 2, main.text()
    assert (project.marks / "finalize-A").read_text() == "done\n"
    assert remote_processes(project.tag) == []
    assert list(project.tmp_root.iterdir()) == []


def test_the_spec_command_line_with_lf_from_the_mains_cache(project, servers, tmp_path):
    """`pytest --as-main H:P --cores 1 -k alg2 --project_structure path/to/project.cfg
    --remote-worker ...` (the documentation's command, hosts changed); -k reaches the hosts."""
    project.write('''
        import pytest
        @pytest.mark.parametrize("i", range(5))
        def test_alg1(i):
            pass
        @pytest.mark.parametrize("i", range(5))
        def test_alg2(i):
            pass
        ''')
    cfg = project.path / "ptmproc_project.cfg"
    moved = project.path / "path" / "to" / "project.cfg"
    moved.parent.mkdir(parents=True)
    data = json.loads(cfg.read_text())
    data["test_files"] = ["../../conftest.py", "../../tests/*.py"]
    cfg.unlink()
    # The config's directory is the bundle's top: keep it at the project root, named as in the spec.
    (project.path / "project.cfg").write_text(json.dumps({"project_name": "fleetdemo",
                                                          "test_files": ["conftest.py", "tests/*.py"]}))
    a = servers("127.0.0.3")
    port = sshd.free_port("127.0.0.1")
    main = project.main("--as-main", f"127.0.0.1:{port}", "--cores", "1", "-k", "alg2",
                        "--project_structure", "project.cfg", "--remote-worker", project.host(a, "A"))
    assert main.wait() == 0, main.text()
    assert counts(main.text()) == {"passed": 5, "deselected": 5}
    assert sorted(r[0] for r in project.rows()) == [f"tests/test_suite.py::test_alg2[{i}]" for i in range(5)]
    # Direct connection (the host reaches 127.0.0.1): no tunnel.
    assert f"connecting to 127.0.0.1:{port}" in main.text()


def test_lf_on_the_main_runs_exactly_the_mains_selection(project, servers):
    project.write('''
        import os
        def test_ok():
            pass
        def test_flaky():
            assert os.environ.get("TAG") == "serial"
        ''')
    env = dict(os.environ, LEDGER=str(project.ledger) + ".serial", TAG="none", MARKS=str(project.marks))
    env.pop("PYTEST_XDIST_WORKER", None)
    r = subprocess.run([sys.executable, "-m", "pytest", "-q"], cwd=project.path, env=env, capture_output=True, text=True)
    assert "1 failed, 1 passed" in r.stdout, r.stdout
    a = servers("127.0.0.3")
    main = project.main("-q", "--lf", "--cores", "1", "--remote-worker", project.host(a, "A"))
    assert main.wait() == 1, main.text()
    assert [r[0] for r in project.rows()] == ["tests/test_suite.py::test_flaky"]


@pytest.mark.parametrize("args, message", [
    (["--remote-worker", "127.0.0.3;DEVICE"], "'DEVICE' is not key=value"),
    (["--remote-worker", "127.0.0.3:99999"], "invalid ssh port '99999'"),
    (["--remote-worker", "127.0.0.3;cores=lots"], "--cores: invalid value 'lots'"),
    (["--remote-worker", "127.0.0.3", "--project_structure", "nope.cfg"], "project config"),
])
def test_bad_fleet_options_are_usage_errors(project, args, message):
    project.write("def test_one():\n    pass\n")
    main = project.main(*args)
    assert main.wait() == 4, main.text()
    assert message in main.text()
    assert "Traceback" not in main.text()


def test_bad_project_config_names_file_key_line_and_column(project):
    project.write("def test_one():\n    pass\n")
    cfg = project.path / "ptmproc_project.cfg"
    cfg.write_text('{\n "project_name": "x",\n "test_files": [tests/*.py]\n}\n')
    main = project.main("--remote-worker", "127.0.0.3")
    assert main.wait() == 4
    assert re.search(r"project config .*ptmproc_project.cfg: invalid JSON at line 3, column 17", main.text()), main.text()
    cfg.write_text('{"test_files": "tests/*.py"}')
    main = project.main("--remote-worker", "127.0.0.3")
    assert main.wait() == 4
    assert "'project_name' is required" in main.text()
    cfg.write_text('{"project_name": "x", "test_files": "../elsewhere/*.py"}')
    main = project.main("--remote-worker", "127.0.0.3")
    assert main.wait() == 4
    assert "is outside the config file's directory" in main.text()


def test_the_documentations_own_example_config_loads(tmp_path):
    """The original documentation's example, trailing comma included."""
    from pytest_mproc import project_config

    (tmp_path / "path/to/project_tests").mkdir(parents=True)
    (tmp_path / "path/to/project_tests/a.pattern").write_text("x")
    (tmp_path / "path/to/test/setup").mkdir(parents=True)
    (tmp_path / "path/to/test/setup/script").write_text("#!/bin/sh\n")
    (tmp_path / "path/to/test/teardown").mkdir(parents=True)
    (tmp_path / "path/to/test/teardown/script").write_text("#!/bin/sh\n")
    (tmp_path / "p.cfg").write_text(textwrap.dedent('''
       {
        "project_name": "A_name_associated_with_the_project_under_test",
        "test_files": "./path/to/project_tests/*.pattern",
        "prepare_script": "./path/to/test/setup/script",
        "finalize_script": "./path/to/test/teardown/script",
       }
    '''))
    cfg = project_config.load(tmp_path / "p.cfg")
    assert cfg.project_name == "A_name_associated_with_the_project_under_test"
    assert cfg.files == ["path/to/project_tests/a.pattern", "path/to/test/setup/script", "path/to/test/teardown/script"]
    assert cfg.prepare_script == "path/to/test/setup/script"


def test_a_host_file_of_json_lines(tmp_path):
    from pytest_mproc import remote_hosts

    f = tmp_path / "hosts.jsonl"
    f.write_text('# fleet\n\n{"host": "h1:2222", "arguments": {"DEVICE_SERIAL": "Z0", "default_orientation": "landscape", "cores": 3}}\n'
                 '{"host": "h2", "arguments": {"jump_host": "gw:22"}}\n')
    h1, h2 = remote_hosts.parse([str(f)])
    assert (h1.host, h1.port, h1.cores, h1.env, h1.options) == ("h1", 2222, "3", [("DEVICE_SERIAL", "Z0")],
                                                                ["--default_orientation", "landscape"])
    assert (h2.host, h2.port, h2.jump_host) == ("h2", None, "gw:22")
    with pytest.raises(remote_hosts.HostSpecError, match="cannot be combined"):
        remote_hosts.parse([str(f), "h3"])
    f.write_text('{"host": "h1"\n')
    with pytest.raises(remote_hosts.HostSpecError, match=r"line 1: invalid JSON"):
        remote_hosts.parse([str(f)])


def test_hosts_sharing_a_fresh_cache_install_the_venv_once(tmp_path, ssh_client, servers):
    """Two hosts on one cache directory (an NFS home; here one machine): one installs, the
    other waits on the cache's lock and finds the venv ready."""
    project = Project(tmp_path / "proj", tmp_path / "fresh-cache", ssh_client)
    project.write("import pytest\n@pytest.mark.parametrize('i', range(6))\ndef test_x(i):\n    pass\n")
    a, b = servers("127.0.0.3"), servers("127.0.0.4")
    main = project.main("-q", "--cores", "1", "--remote-worker", project.host(a, "A", WAIT_FOR="B"),
                        "--remote-worker", project.host(b, "B", WAIT_FOR="A"))
    assert main.wait() == 0, main.text()
    assert main.text().count("venv installed") == 1 and main.text().count("venv cached") == 1, main.text()
    assert len(list((project.cache / "fleetdemo").glob("venv-*"))) == 1


def test_hosts_in_network_namespaces_direct_and_through_a_jump_host(project, servers, namespaces, ssh_client):
    """Host A is a namespace joined to this machine; host B a namespace joined only to A, so it
    is reached only through A as ssh jump host and cannot route to the main: its node connects
    back through a reverse tunnel. A's node connects to the main directly, at the address its
    ssh connection came from (the main serves on 0.0.0.0)."""
    s1, s2 = netns.free_subnets(2)
    try:
        a_ns = namespaces.add("a")
        b_ns = namespaces.add("b")
        namespaces.join(None, a_ns, s1)
        namespaces.join(a_ns, b_ns, s2)
    except netns.Unavailable as e:
        pytest.skip(f"cannot create network namespaces here: {e}")
    a = servers(f"10.{s1}.0.2", netns=a_ns)
    b = servers(f"10.{s2}.0.2", netns=b_ns)
    # B is not reachable from here without the jump host.
    direct = subprocess.run(["ssh", "-F", str(ssh_client.config), "-o", "ConnectTimeout=3", "-p", str(b.port),
                             b.host, "true"], capture_output=True, text=True)
    assert direct.returncode != 0 and re.search(r"unreachable|timed out|No route|refused", direct.stderr), direct.stderr
    project.write(SUITE)
    port = sshd.free_port("0.0.0.0")
    # A: the node connects straight back to the address its ssh connection came from.
    main = project.main("-q", "--as-main", f"0.0.0.0:{port}", "--cores", "2",
                        "--remote-worker", project.host(a, "A", DEVICE="devA", flavor="spicy"))
    assert main.wait() == 1, main.text()
    text = main.text()
    assert counts(text) == {"passed": 25, "failed": 1}
    assert f"Worker-0 {a.address}: worker node started (session pid " in text
    assert f"connecting to 10.{s1}.0.1:{port})" in text
    # B: only through A, and it cannot route back: a reverse tunnel on its ssh connection.
    main = project.main("-q", "--as-main", f"0.0.0.0:{port}", "--cores", "2",
                        "--remote-worker", project.host(b, "B", DEVICE="devB", flavor="mild",
                                                        jump_host=f"{a.host}:{a.port}"))
    assert main.wait() == 1, main.text()
    text = main.text()
    assert counts(text) == {"passed": 25, "failed": 1}
    assert re.search(rf"Worker-0 {re.escape(b.address)}: cannot reach the main directly .*: using a reverse tunnel", text)
    assert re.search(rf"Worker-0 {re.escape(b.address)}: worker node started \(session pid \d+ on the host, connecting to 127\.0\.0\.1:\d+\)", text)
    rows = project.rows()
    once = Counter({f"tests/test_suite.py::test_work[{i}]": 1 for i in range(24)}
                   | {"tests/test_suite.py::test_fails": 1, "tests/test_suite.py::test_environment": 1})
    assert Counter(r[0] for r in rows if r[1] == "A") == once
    assert Counter(r[0] for r in rows if r[1] == "B") == once


def test_reverse_tunnel_without_as_main(project, servers):
    """Without --as-main the main listens only on its loopback; nodes reach it through tunnels."""
    project.write(SUITE)
    a = servers("127.0.0.3")
    main = project.main("-q", "--cores", "1", "--remote-worker", project.host(a, "A", DEVICE="devA", flavor="spicy"))
    assert main.wait() == 1, main.text()
    assert re.search(r"Worker-0 \S+: reverse tunnel 127\.0\.0\.1:(\d+) on the host -> the main", main.text())
    assert counts(main.text()) == {"passed": 25, "failed": 1}


@pytest.fixture
def throwaway_user():
    import secrets

    name = f"ptm{uuid.uuid4().hex[:6]}"
    password = secrets.token_urlsafe(12)
    r = subprocess.run(["useradd", "-m", "-s", "/bin/sh", name], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot create a user: {r.stderr.strip()}")
    try:
        subprocess.run(["chpasswd"], input=f"{name}:{password}\n", text=True, check=True, capture_output=True)
        yield name, password
    finally:
        subprocess.run(["pkill", "-KILL", "-u", name], capture_output=True)
        subprocess.run(["userdel", "-r", name], capture_output=True)


def test_password_login_never_shows_the_password(tmp_path, ssh_client, servers, throwaway_user):
    """Settings.set_ssh_credentials(user, password) against a server that takes only
    passwords: the run works, and the password is in no process's command line."""
    user, password = throwaway_user
    shared = Path(f"/tmp/ptm-pw-{uuid.uuid4().hex[:8]}")
    shared.mkdir(mode=0o777)
    os.chmod(shared, 0o777)
    try:
        project = Project(tmp_path / "proj", shared / "cache", ssh_client)
        project.ledger = shared / "ledger"
        project.marks = shared / "marks"
        project.marks.mkdir()
        os.chmod(project.marks, 0o777)
        project.tmp_root = shared / "tmp"
        project.tmp_root.mkdir()
        os.chmod(project.tmp_root, 0o777)
        project.write('''
            import os, pathlib
            def test_who():
                import getpass
                assert getpass.getuser() == os.environ["EXPECT_USER"]
            ''', conftest_extra='''
            import os
            if os.environ.get("FLEET_PW"):
                pytest_mproc.Settings.set_ssh_credentials(os.environ["FLEET_USER"], os.environ["FLEET_PW"])
            ''')
        a = servers("127.0.0.8", password_auth=True, pubkey_auth=False)
        main = project.main("-q", "--cores", "1", "--remote-worker", project.host(a, "A", EXPECT_USER=user),
                            env={"FLEET_USER": user, "FLEET_PW": password})
        main.wait_for(r"worker node started")
        for pid in os.listdir("/proc"):
            if pid.isdigit():
                try:
                    assert password.encode() not in Path(f"/proc/{pid}/cmdline").read_bytes(), pid
                except OSError:
                    pass
        assert main.wait() == 0, main.text()
        assert counts(main.text()) == {"passed": 1}
    finally:
        subprocess.run(["rm", "-rf", str(shared)])


def test_a_slow_host_holds_back_no_other(project, servers):
    """Host B's prepare_script does not end; A runs every test, and when the work is done B
    is given up (its finalize_script still runs): the run does not wait for it."""
    project.write("import pytest\n@pytest.mark.parametrize('i', range(8))\ndef test_x(i):\n    pass\n", prepare='''
        if [ "$TAG" = "B" ]; then touch "$MARKS/b-preparing"; while :; do sleep 0.2; done; fi
        ''', finalize='echo done > "$MARKS/finalize-$TAG"\n')
    a, b = servers("127.0.0.3"), servers("127.0.0.4")
    # A's tests wait until B is in its prepare_script (set up, so its finalize_script must run).
    main = project.main("-q", "--cores", "1", "--remote-worker", project.host(b, "B"),
                        "--remote-worker", project.host(a, "A", WAIT_FOR_MARK=str(project.marks / "b-preparing")))
    assert main.wait(90) == 0, main.text()
    text = main.text()
    assert counts(text) == {"passed": 8}
    assert {r[1] for r in project.rows()} == {"A"}
    assert re.search(r"Worker-0 127\.0\.0\.4:\d+: cannot take part: the run was over before this host was ready", text), text
    assert (project.marks / "finalize-B").read_text() == "done\n"
    assert (project.marks / "finalize-A").read_text() == "done\n"


def test_a_killed_main_leaves_no_remote_process(project, servers):
    """SIGKILL on the main (no cleanup of ours runs): the hosts' nodes lose the main and end."""
    project.write(BLOCKING_TEST)
    a = servers("127.0.0.3")
    main = project.main("-q", "--cores", "1", "--remote-worker", project.host(a, "A"))
    wait_until_running(project, main)
    assert remote_processes(project.tag)
    os.kill(main.pid, signal.SIGKILL)
    main.popen.wait()
    deadline = time.monotonic() + 30
    while remote_processes(project.tag) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert remote_processes(project.tag) == []


def test_which_arguments_reach_the_hosts(pytester):
    """Selection and behaviour options are passed on (paths relative to the project); the
    main's own reporting, caching, stopping and fleet options are not."""
    from pytest_mproc import forwarded_args

    pytester.mkdir("tests")
    pytester.makepyfile(**{"tests/test_a.py": "def test_t():\n    pass\n"})
    config = pytester.parseconfig(
        "-k", "alg2", "-m", "slow", "-p", "no:randomly", "-o", "xfail_strict=true", "-W", "error",
        "--junitxml=out.xml", "--lf", "-x", "--maxfail", "2", "-vv", "--tb=short", "-s",
        "--as-main", "127.0.0.1:1", "--remote-worker", "h1", "--cores", "3", "--mproc-node-wait", "5",
        "tests/test_a.py::test_t", "-rA", "--durations=3")
    out = forwarded_args.forward(config, pytester.path)
    assert out == ["-k", "alg2", "-m", "slow", "-p", "no:randomly", "-o", "xfail_strict=true", "-W", "error",
                   "-v", "-v", "--tb", "short", "-s", "tests/test_a.py::test_t"]
    assert forwarded_args.rootdir_arg(config, pytester.path) == ["--rootdir=."]
    # The project directory (the bundle's top) must contain what the main runs.
    with pytest.raises(forwarded_args.ForwardError, match="outside the project directory"):
        forwarded_args.forward(config, pytester.mkdir("other"))


def test_runtime_wheels_are_this_installation_and_old_ones_are_pruned(tmp_path):
    """The wheels shipped to hosts: pytest-mproc (this very version) and what it requires; a
    wheel no run used for 14 days leaves the main's cache."""
    import importlib.metadata as md

    from pytest_mproc import runtime_wheels

    stale = tmp_path / "wheels" / "old-1.0-0abc-py3-none-any.whl"
    stale.parent.mkdir()
    stale.write_bytes(b"x")
    month_ago = time.time() - 30 * 86400
    os.utime(stale, (month_ago, month_ago))
    dest, names, req = runtime_wheels.build(tmp_path / "wheels")
    assert req == f"pytest-mproc=={md.version('pytest-mproc')}"
    assert any(n.startswith("pytest_mproc-") for n in names) and any(n.startswith("pytest-") for n in names)
    assert not stale.exists()
    with zipfile.ZipFile(dest / next(n for n in names if n.startswith("pytest_mproc-"))) as z:
        assert "pytest_mproc/plugin.py" in z.namelist()
        assert any(n.endswith("entry_points.txt") for n in z.namelist())
