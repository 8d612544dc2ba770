"""Shared helpers for the plugin's tests: every run of the plugin happens in a subprocess
(`pytester.runpytest_subprocess`), because workers are forked from the process under test."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections import Counter

import pytest

pytest_plugins = ["pytester"]


@pytest.fixture(autouse=True)
def _not_a_worker_below(monkeypatch):
    """This suite runs under `--cores` itself: the pytest runs it starts must not inherit the
    outer worker's variables (they describe the outer run, not theirs)."""
    for name in ("PTMPROC_WORKER", "PTMPROC_WORKER_ID", "PYTEST_XDIST_WORKER", "PYTEST_XDIST_WORKER_COUNT",
                 "PYTEST_XDIST_TESTRUNUID"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def run(pytester):
    """run(*args) -> RunResult of a pytest subprocess in the pytester directory."""

    def _run(*args, timeout=120):
        return pytester.runpytest_subprocess("-p", "no:cacheprovider", *args, timeout=timeout)

    return _run


@pytest.fixture
def ledger(pytester, monkeypatch):
    """A file every test of a generated suite can append `nodeid pid` to, to count executions."""
    path = pytester.path / "ledger.txt"
    monkeypatch.setenv("LEDGER", str(path))
    pytester.makeconftest(
        """
        import os
        import pytest

        @pytest.fixture(autouse=True)
        def _ledger(request):
            fd = os.open(os.environ["LEDGER"], os.O_WRONLY | os.O_APPEND | os.O_CREAT)
            os.write(fd, f"{request.node.nodeid} {os.getpid()}\\n".encode())
            os.close(fd)
            yield
        """
    )

    class Ledger:
        def entries(self) -> list[tuple[str, int]]:
            if not path.exists():
                return []
            return [(l.rsplit(" ", 1)[0], int(l.rsplit(" ", 1)[1])) for l in path.read_text().splitlines()]

        def counts(self) -> Counter:
            return Counter(n for n, _ in self.entries())

        def pids(self) -> set[int]:
            return {p for _, p in self.entries()}

    return Ledger()


@pytest.fixture
def event_log(pytester, monkeypatch):
    """event_log(ENV, module, source) -> read(): helper `source` becomes importable as `module` in
    the generated suite, ENV names a file its tests append rows to; read() returns the rows split
    on whitespace."""

    def make(env: str, module: str, source: str):
        path = pytester.path / f"{env.lower()}.txt"
        monkeypatch.setenv(env, str(path))
        pytester.makepyfile(**{module: source})

        def read() -> list[list[str]]:
            return [l.split() for l in path.read_text().splitlines()] if path.exists() else []

        return read

    return make


def junit_cases(path) -> dict[str, str]:
    """nodeid-ish name -> outcome tag ('passed', 'failure', 'error', 'skipped') from a junit file."""
    root = ET.parse(path).getroot()
    out = {}
    for case in root.iter("testcase"):
        kinds = sorted(child.tag for child in case if child.tag in ("failure", "error", "skipped"))
        out[f"{case.get('classname')}::{case.get('name')}"] = ",".join(kinds) or "passed"
    return out


def outcome_lines(result) -> list[str]:
    """The sorted short-summary lines of an -rA run (PASSED/FAILED/ERROR/... nodeid)."""
    pat = re.compile(r"^(PASSED|FAILED|ERROR|SKIPPED|XFAIL|XPASS) (\S+)")
    return sorted(m.group(0) for line in result.outlines if (m := pat.match(line)))
