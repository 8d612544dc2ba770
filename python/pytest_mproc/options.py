"""Command-line options of pytest-mproc and their validation (bad values are usage errors)."""

from __future__ import annotations

import re

import pytest

from .cpus import available_cpus

_CORES = re.compile(r"^\s*(?:(\d+)|auto(?:\s*([*/])\s*(\d+))?)\s*$")


def parse_cores(value: str) -> int:
    """`N`, `auto`, `auto*K` or `auto/K` -> a worker count >= 1 (raises ValueError otherwise)."""
    m = _CORES.match(value or "")
    if not m:
        raise ValueError(f"--cores: invalid value {value!r} (use N, auto, auto*K or auto/K)")
    if m.group(1) is not None:
        n = int(m.group(1))
        if n < 1:
            raise ValueError(f"--cores: must be at least 1, got {value!r}")
        return n
    n = available_cpus()
    op, k = m.group(2), m.group(3)
    if op:
        k = int(k)
        if k < 1:
            raise ValueError(f"--cores: the factor in {value!r} must be at least 1")
        n = n * k if op == "*" else n // k
    return max(1, n)


def parse_bool(value: str, option: str) -> bool:
    v = (value or "").strip().lower()
    if v in ("true", "1", "yes", "on"):
        return True
    if v in ("false", "0", "no", "off"):
        return False
    raise ValueError(f"{option}: expected True or False, got {value!r}")


def addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("pytest_mproc", "pytest-mproc: parallel execution on many cores and hosts")
    group.addoption(
        "--cores",
        "-C",
        dest="mproc_cores",
        metavar="N",
        default=None,
        help="run tests in N worker processes: N, auto (CPUs usable by this process), auto*K or auto/K",
    )
    group.addoption(
        "--disable-mproc",
        dest="mproc_disabled",
        metavar="True|False",
        default="False",
        help="True turns every pytest-mproc behaviour off (overrides --cores)",
    )
    group.addoption(
        "--mproc-no-history",
        dest="mproc_no_history",
        action="store_true",
        default=False,
        help="do not use or record test durations (by default the next run starts the longest tests first)",
    )


def usage_error(msg: str) -> pytest.UsageError:
    return pytest.UsageError(msg)
