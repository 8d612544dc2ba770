"""Real multi-host runs on this machine for the tests: a main and worker nodes as separate
process trees (own sessions) talking TCP over 127.0.0.x, optionally inside network namespaces.
Every process of a cluster carries a tag in its environment, so a test can tell whether any of
them is still alive."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

SERVING = re.compile(r"main node serving \d+ tests on (\S+):(\d+)")


def tagged_processes(name: str, value: str) -> list[int]:
    """Pids of live (not zombie) processes whose environment has `name=value`."""
    me = f"{name}={value}".encode()
    pids = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            if me in (d / "environ").read_bytes().split(b"\0"):
                if (d / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
                    pids.append(int(d.name))
        except OSError:
            continue
    return pids


class Proc:
    def __init__(self, popen: subprocess.Popen, out: Path) -> None:
        self.popen = popen
        self.out = out

    @property
    def pid(self) -> int:
        return self.popen.pid

    def text(self) -> str:
        return self.out.read_text(errors="replace") if self.out.exists() else ""

    def wait(self, timeout: float = 120) -> int:
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"pid {self.pid} did not end within {timeout} s; output:\n{self.text()}") from None

    def wait_for(self, pattern: re.Pattern | str, timeout: float = 60) -> re.Match:
        """Waits until the output shows `pattern` (an event, polled with a deadline)."""
        pat = re.compile(pattern) if isinstance(pattern, str) else pattern
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            m = pat.search(self.text())
            if m:
                return m
            if self.popen.poll() is not None:
                m = pat.search(self.text())
                if m:
                    return m
                raise AssertionError(f"exited ({self.popen.returncode}) without {pat.pattern!r}:\n{self.text()}")
            time.sleep(0.02)
        raise AssertionError(f"no {pat.pattern!r} within {timeout} s:\n{self.text()}")

    def kill(self) -> None:
        try:
            os.killpg(self.popen.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.popen.wait()


class Cluster:
    def __init__(self, path: Path, token_hex: str, python: str = sys.executable) -> None:
        self.path = path
        self.python = python
        self.token_hex = token_hex
        self.tag = uuid.uuid4().hex
        self.procs: list[Proc] = []
        self.port: int | None = None
        self.host: str | None = None

    def _env(self, extra: dict | None) -> dict:
        env = dict(os.environ)
        env.update(PTMPROC_AUTH_TOKEN=self.token_hex, PYTHONUNBUFFERED="1", MPROC_CLUSTER_TAG=self.tag)
        env.pop("PYTEST_ADDOPTS", None)
        env.update(extra or {})
        return env

    def spawn(self, args: list[str], name: str, env: dict | None = None, cwd: Path | None = None,
              prefix: list[str] | None = None) -> Proc:
        out = self.path / f"{name}.out"
        cmd = (prefix or []) + [self.python, "-m", "pytest", "-p", "no:cacheprovider", *args]
        popen = subprocess.Popen(cmd, cwd=cwd or self.path, env=self._env(env), stdout=out.open("w"),
                                 stderr=subprocess.STDOUT, start_new_session=True)
        proc = Proc(popen, out)
        self.procs.append(proc)
        return proc

    def reserve(self, host: str = "127.0.0.2", connect_host: str | None = None) -> None:
        """Picks the main's port now, so nodes can be started first (they retry connecting):
        then every node is there when the main starts handing out work."""
        import socket

        with socket.socket() as s:
            s.bind((host, 0))
            self.port = s.getsockname()[1]
        self.host = connect_host or host

    def main(self, *args: str, host: str = "127.0.0.2", port: int = 0, env: dict | None = None, **kw) -> Proc:
        where = f"{host}:{port}" if port else host
        proc = self.spawn(["--as-main", where, *args], "main", env, **kw)
        m = proc.wait_for(SERVING)
        self.host, self.port = m.group(1), int(m.group(2))
        return proc

    def node(self, name: str, *args: str, cores: int = 2, env: dict | None = None, address: str | None = None,
             ready: bool = False, **kw) -> Proc:
        """A worker node. `ready`: return once its bridge is running (it is then trying to
        connect, so it joins as soon as the main listens; needs the main not started yet)."""
        env = {"NODE_NAME": name, **({"PTMPROC_VERBOSE": "1"} if ready else {}), **(env or {})}
        address = address or f"{self.host}:{self.port}"
        proc = self.spawn(["--as-worker", address, "--cores", str(cores),
                           "--basetemp", str(self.path / f"tmp-{name}"), *args], name, env, **kw)
        if ready:
            proc.wait_for(r"node \S+: fork server \d+, bridge \d+")
        return proc

    def alive(self) -> list[int]:
        """Pids of processes still carrying this cluster's tag."""
        return tagged_processes("MPROC_CLUSTER_TAG", self.tag)

    def close(self) -> None:
        for p in self.procs:
            p.kill()


LEDGER_CONFTEST = """
import os
import time
import pytest

@pytest.fixture(scope="session", autouse=True)
def _every_node_takes_part():
    # MPROC_TEST_NODES=a,b: each worker's first test waits until a worker of every named node
    # has started one, so every node takes work however slowly it starts (a loaded machine).
    want = os.environ.get("MPROC_TEST_NODES")
    if want and os.environ.get("PTMPROC_WORKER"):
        d = os.environ["MPROC_TEST_NODES_DIR"]
        open(os.path.join(d, "joined-" + os.environ.get("NODE_NAME", "main")), "w").close()
        deadline = time.monotonic() + 60
        while not all(os.path.exists(os.path.join(d, "joined-" + n)) for n in want.split(",")):
            assert time.monotonic() < deadline, "not every node joined within 60 s"
            time.sleep(0.005)  # polling for the other nodes' marker files, bounded
    yield

@pytest.fixture(autouse=True)
def _ledger(request):
    fd = os.open(os.environ["LEDGER"], os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    os.write(fd, f"{request.node.nodeid} {os.environ.get('NODE_NAME', 'main')} {os.getpid()}\\n".encode())
    os.close(fd)
    yield
"""


def ledger_rows(path: Path) -> list[tuple[str, str, int]]:
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        nodeid, node, pid = line.rsplit(" ", 2)
        rows.append((nodeid, node, int(pid)))
    return rows
