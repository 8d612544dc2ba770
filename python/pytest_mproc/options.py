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
        "--num_cores",
        "--num-cores",
        dest="mproc_cores",
        metavar="N",
        default=None,
        help="run tests in N worker processes: N, auto (CPUs usable by this process), auto*K or auto/K",
    )
    group.addoption(
        "--disable-mproc",
        "--diable-mproc",  # the spelling the original documentation uses
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


    group.addoption(
        "--as-main",
        dest="mproc_as_main",
        metavar="HOST[:PORT]",
        default=None,
        help="multi-host: be the main node, serving the test queue on HOST:PORT to worker nodes "
        "(with --cores N, also run N local workers); or, if HOST:PORT is a running "
        "pytest_mproc.orchestration server, use it",
    )
    group.addoption(
        "--as-worker",
        dest="mproc_as_worker",
        metavar="HOST:PORT",
        default=None,
        help="multi-host: be a worker node of the main at HOST:PORT, running --cores N workers",
    )
    group.addoption(
        "--remote-worker",
        dest="mproc_remote_workers",
        metavar="HOST[:PORT][;key=value...]|FILE|URL",
        action="append",
        default=[],
        help="fleet run: deploy the project over ssh to this host and run a worker node there "
        "(repeatable), or to every host of a file of JSON lines, or of a reservation service "
        "(http(s) URL; more URLs are backups); see docs/fleet.md",
    )
    group.addoption(
        "--project_structure",
        "--project-structure",
        dest="mproc_project_structure",
        metavar="PATH",
        default=None,
        help="fleet run: the project definition (JSON) saying what to ship to the hosts "
        "(default: ./ptmproc_project.cfg)",
    )
    group.addoption(
        "--mproc-ssh-config",
        dest="mproc_ssh_config",
        metavar="FILE",
        default=None,
        help="fleet run: ssh configuration file to use instead of ~/.ssh/config (ssh -F)",
    )
    group.addoption(
        "--mproc-timeline",
        dest="mproc_timeline",
        metavar="PATH.html",
        default=None,
        help="write a self-contained HTML timeline of the run: a lane per worker, a bar per test "
        "(see docs/seeing.md)",
    )
    # Set by the main on the hosts of a fleet run, not by users.
    group.addoption("--mproc-selection", dest="mproc_selection", default=None, help=argparse_suppress())
    group.addoption("--mproc-node-name", dest="mproc_node_name", default=None, help=argparse_suppress())
    group.addoption(
        "--mproc-connect-timeout",
        dest="mproc_connect_timeout",
        metavar="SECONDS",
        type=float,
        default=30.0,
        help="multi-host: how long a worker node keeps trying to reach the main (default 30)",
    )
    group.addoption(
        "--mproc-hang-report",
        dest="mproc_hang_report",
        metavar="SECONDS",
        type=float,
        default=300.0,
        help="when a test has run this long, print once which worker runs it and that worker's "
        "Python stack, without stopping it (default 300; 0: never)",
    )
    group.addoption(
        "--mproc-node-wait",
        dest="mproc_node_wait",
        metavar="SECONDS",
        type=float,
        default=60.0,
        help="multi-host: how long the main waits while no worker node is connected before it "
        "ends the run with the tests not run (default 60)",
    )


def argparse_suppress() -> str:
    import argparse

    return argparse.SUPPRESS


def parse_address(value: str, option: str, need_port: bool = True) -> tuple[str, int]:
    """`HOST:PORT` (or `HOST` when the port may be chosen) -> (host, port); port 0 = choose."""
    host, sep, port = (value or "").strip().rpartition(":")
    if not sep:
        host, port = (value or "").strip(), ""
    host = host.strip("[]")
    if not host:
        raise ValueError(f"{option}: expected HOST:PORT, got {value!r}")
    if not port:
        if need_port:
            raise ValueError(f"{option}: expected HOST:PORT, got {value!r} (no port)")
        return host, 0
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{option}: invalid port {port!r} in {value!r} (use 1-65535)")
    return host, int(port)

