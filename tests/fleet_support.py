"""What the fleet tests share: real sshd servers and their client (tests/sshd.py), network
namespaces (tests/netns.py), and a project written for a fleet run whose tests append one line
each to a ledger (node id, the host's TAG, its worker)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pytest

import netns
import sshd
from cluster import Proc, tagged_processes

LEDGER_TESTS = '''
import os, pathlib, time, pytest

def _ledger(request):
    with open(os.environ["LEDGER"], "a") as f:
        f.write(f"{request.node.nodeid}|{os.environ.get('TAG', '-')}|{os.environ.get('PYTEST_XDIST_WORKER', '-')}\\n")

def _wait():
    # WAIT_FOR=<another host's tag>: wait (after this test's ledger line) until a test ran there,
    # so both hosts take part whatever their start-up times (the other finds work: a host's
    # workers hold a few tests at most). WAIT_FOR_MARK=<path>: wait until that file exists.
    other, mark = os.environ.get("WAIT_FOR"), os.environ.get("WAIT_FOR_MARK")
    deadline = time.monotonic() + 120
    while (other and f"|{other}|" not in pathlib.Path(os.environ["LEDGER"]).read_text()) or (
            mark and not os.path.exists(mark)):
        assert time.monotonic() < deadline, f"waited in vain for {other or mark}"
        time.sleep(0.02)

@pytest.fixture(autouse=True)
def ledger(request):
    _ledger(request)
    _wait()
'''


@pytest.fixture(scope="session")
def ssh_client(tmp_path_factory):
    return sshd.Client(tmp_path_factory.mktemp("ssh-client"))


@pytest.fixture(scope="session")
def shared_cache(tmp_path_factory):
    """The hosts' cache shared by the tests of this process (the venv is installed once)."""
    return tmp_path_factory.mktemp("remote-cache")


@pytest.fixture
def servers(tmp_path, ssh_client):
    started: list[sshd.Server] = []

    def start(host: str = "127.0.0.1", **kw) -> sshd.Server:
        s = sshd.Server(tmp_path / f"sshd{len(started)}", ssh_client, host=host, **kw).start()
        started.append(s)
        ssh_client.trust(s)
        return s

    yield start
    for s in started:
        s.stop()


class Project:
    def __init__(self, path: Path, cache: Path, client: sshd.Client) -> None:
        self.path = path
        self.cache = cache
        self.client = client
        self.ledger = path.parent / f"ledger-{uuid.uuid4().hex[:8]}"
        self.marks = path.parent / f"marks-{uuid.uuid4().hex[:8]}"
        self.marks.mkdir()
        self.tmp_root = path.parent / "remote-tmp"
        self.tmp_root.mkdir(exist_ok=True)
        self.tag = uuid.uuid4().hex[:10]

    def write(self, tests: str, config: dict | None = None, prepare: str | None = None,
              finalize: str | None = None, requirements: str | None = None, files: dict | None = None,
              conftest_extra: str = "") -> None:
        p = self.path
        (p / "tests").mkdir(parents=True, exist_ok=True)
        (p / "conftest.py").write_text(textwrap.dedent(f'''
            from pathlib import Path
            import pytest_mproc
            pytest_mproc.Settings.set_cached_dir(Path({str(self.cache)!r}))
            pytest_mproc.Settings.set_tmp_root(Path({str(self.tmp_root)!r}))
            def pytest_addoption(parser):
                parser.addoption("--flavor", default="plain")
        ''') + textwrap.dedent(conftest_extra))
        (p / "tests" / "test_suite.py").write_text(LEDGER_TESTS + textwrap.dedent(tests))
        cfg = {"project_name": "fleetdemo", "test_files": ["conftest.py", "tests/*.py"]}
        for name, text in (("prepare.sh", prepare), ("finalize.sh", finalize)):
            if text is not None:
                (p / name).write_text("#!/bin/sh\n" + textwrap.dedent(text))
                os.chmod(p / name, 0o755)
                cfg["prepare_script" if name == "prepare.sh" else "finalize_script"] = f"./{name}"
        if requirements is not None:
            (p / "requirements.txt").write_text(requirements)
            cfg["test_files"].append("requirements.txt")
        for rel, data in (files or {}).items():
            (p / rel).parent.mkdir(parents=True, exist_ok=True)
            (p / rel).write_bytes(data if isinstance(data, bytes) else data.encode())
            cfg["test_files"].append(rel)
        cfg.update(config or {})
        (p / "ptmproc_project.cfg").write_text(json.dumps(cfg, indent=1))

    def host(self, server: sshd.Server, tag: str, **arguments) -> str:
        args = {"LEDGER": str(self.ledger), "TAG": tag, "RUN_TAG": self.tag, "MARKS": str(self.marks), **arguments}
        return server.address + "".join(f";{k}={v}" for k, v in args.items())

    def main(self, *args: str, env: dict | None = None) -> Proc:
        out = self.path.parent / f"main-{uuid.uuid4().hex[:6]}.out"
        e = dict(os.environ, PTMPROC_HOST_ARTIFACTS_DIR=str(self.path / "artifacts"), **(env or {}))
        e.pop("PYTEST_XDIST_WORKER", None)
        e.pop("PYTEST_ADDOPTS", None)
        popen = subprocess.Popen([sys.executable, "-m", "pytest",
                                  f"--mproc-ssh-config={self.client.config}", *args],
                                 cwd=self.path, env=e, stdout=out.open("w"), stderr=subprocess.STDOUT,
                                 start_new_session=True)
        return Proc(popen, out)

    def rows(self) -> list[tuple[str, str, str]]:
        if not self.ledger.exists():
            return []
        return [tuple(line.split("|")) for line in self.ledger.read_text().splitlines()]

    def serial(self, *args: str) -> dict:
        """Outcome counts of the same tests run serially here (the parity reference)."""
        e = dict(os.environ, LEDGER=str(self.path.parent / "serial-ledger"), DEVICE="devS", TAG="serial",
                 MARKS=str(self.marks), PTMPROC_WORKER_ARTIFACTS_DIR=str(self.marks))
        e.pop("PYTEST_XDIST_WORKER", None)
        r = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", *args],
                           cwd=self.path, env=e, capture_output=True, text=True)
        return counts(r.stdout)


def counts(text: str) -> dict:
    line = [l for l in text.splitlines() if re.search(r"\d+ (passed|failed)", l)]
    assert line, text
    return {k: int(v) for v, k in re.findall(r"(\d+) (passed|failed|skipped|error|errors|deselected)", line[-1])}


@pytest.fixture
def project(tmp_path, shared_cache, ssh_client):
    return Project(tmp_path / "proj", shared_cache, ssh_client)


def remote_processes(run_tag: str) -> list[int]:
    """The processes of a fleet run on the hosts (their environment carries RUN_TAG)."""
    return tagged_processes("RUN_TAG", run_tag)


# A test that runs until the run is interrupted, leaving the mark "running" once it started.
BLOCKING_TEST = '''
import os, pathlib, time
def test_blocks():
    pathlib.Path(os.environ["MARKS"], "running").write_text("yes")
    while True:
        time.sleep(0.05)
'''


def wait_until_running(project: "Project", main: Proc, timeout: float = 60) -> None:
    """Until BLOCKING_TEST runs on a host (polled, bounded; the main must still be running)."""
    deadline = time.monotonic() + timeout
    while not (project.marks / "running").exists():
        assert main.popen.poll() is None and time.monotonic() < deadline, main.text()
        time.sleep(0.05)


@pytest.fixture
def namespaces():
    try:
        ns = netns.Namespaces()
    except netns.Unavailable as e:
        pytest.skip(str(e))
    try:
        yield ns
    finally:
        ns.close()
