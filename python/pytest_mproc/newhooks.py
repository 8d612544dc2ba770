"""pytest-mproc's own hooks, for plugins that want to observe or react to what a parallel run
does (registered with `pytest_addhooks`; implement them in a conftest.py or plugin like any
pytest hook). Each is called in the process that supervises the event: the main on a single
host; on a multi-host run the worker node's own pytest process for worker events, the main for
node events."""

import pytest


@pytest.hookspec()
def pytest_mproc_worker_started(config, worker_id: str, pid: int, node: str) -> None:
    """Worker `worker_id` (pid `pid`) is up and about to take tests. `node` names the host's
    node ("" on a single host)."""


@pytest.hookspec()
def pytest_mproc_worker_crashed(config, worker_id: str, pid: int, nodeid: str | None, exit_status: str,
                                stderr_tail: str, node: str) -> None:
    """Worker `worker_id` died: while running test `nodeid` (None: between tests), with
    `exit_status` as text ("killed by SIGSEGV (signal 11)", "exited with code 3"); `stderr_tail`
    is the end of its stderr (a faulthandler traceback on a segfault). Called before the test is
    reported as failed; a replacement worker follows. A place to collect a core dump."""


@pytest.hookspec()
def pytest_mproc_node_joined(config, node: str, workers: int) -> None:
    """Multi-host main: worker node `node` joined the run with `workers` workers."""


@pytest.hookspec()
def pytest_mproc_node_lost(config, node: str, reason: str) -> None:
    """Multi-host main: worker node `node` was lost (`reason`); its running tests are reported
    as crashed and the rest of its work goes to other nodes."""
