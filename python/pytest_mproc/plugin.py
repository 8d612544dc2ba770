"""pytest entry point of pytest-mproc: options, and the switch between inert and parallel.

Without --cores (or with --disable-mproc True) nothing here changes pytest's behaviour."""

from __future__ import annotations

import pytest

from . import options
from .tmpdirs import mp_tmp_dir, mp_tmp_dir_factory, mp_tmpdir, mp_tmpdir_factory  # noqa: F401 (fixtures)
from .xdist_protocol import testrun_uid, worker_id  # noqa: F401 (fixtures, as xdist's)


def pytest_addoption(parser: pytest.Parser) -> None:
    options.addoption(parser)


def pytest_collection_finish(session) -> None:
    """Misdeclared global/node fixtures are usage errors with or without --cores."""
    from . import fixtures

    fixtures.validate()


@pytest.hookimpl(wrapper=True)
def pytest_collection_modifyitems(session, config, items):
    """On a fleet host: exactly the main's selection, in its order (selection.py)."""
    result = yield
    path = config.getoption("mproc_selection", None)
    if path:
        from . import selection

        selection.apply(config, items, path)
    return result


def pytest_addhooks(pluginmanager) -> None:
    from . import newhooks, xdist_protocol

    xdist_protocol.add_hookspecs(pluginmanager)
    pluginmanager.add_hookspecs(newhooks)


def _register_markers(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "mproc_group(name_or_GroupTag, priority=10, restrict_to=SINGLE_PROCESS): "
        "pytest-mproc: run these tests as one unit of work (see pytest_mproc.group)")
    config.addinivalue_line(
        "markers", "mproc_priority(level): pytest-mproc: schedule at this priority, lower first "
        "(see pytest_mproc.priority)")


@pytest.hookimpl(trylast=True)
def pytest_configure(config: pytest.Config) -> None:
    from . import gc_freeze

    gc_freeze.release_previous()  # an earlier session in this process may have frozen its objects
    _register_markers(config)
    try:
        disabled = options.parse_bool(config.getoption("mproc_disabled"), "--disable-mproc")
    except ValueError as e:
        raise pytest.UsageError(str(e)) from None
    if disabled:
        return
    cores = config.getoption("mproc_cores")
    as_main = config.getoption("mproc_as_main")
    as_worker = config.getoption("mproc_as_worker")
    remote_workers = config.getoption("mproc_remote_workers")
    if cores is None and as_main is None and as_worker is None and not remote_workers:
        return
    try:
        workers = options.parse_cores(cores) if cores is not None else 0
        fleet = None
        if remote_workers:
            from . import fleet as fleet_mode

            if as_worker is not None:
                raise ValueError("--remote-worker and --as-worker cannot be combined: --remote-worker is for the main")
            fleet = fleet_mode.configure(config, remote_workers, as_main, cores)
            # --cores N is per remote host; the main itself runs no workers.
            workers = 0
            as_main = as_main or "127.0.0.1"
        multihost = _multihost(as_main, as_worker, workers)
        if fleet is not None:
            multihost = multihost + (fleet,)
    except ValueError as e:
        raise pytest.UsageError(str(e)) from None
    if getattr(config.option, "numprocesses", None) not in (None, 0):
        raise pytest.UsageError("--cores and xdist's -n/--numprocesses cannot be combined: drop one of them")
    if config.getoption("usepdb", False):
        raise pytest.UsageError("--pdb needs a single process: drop --cores (or use --disable-mproc True)")
    if getattr(config.option, "trace", False):
        raise pytest.UsageError("--trace needs a single process: drop --cores (or use --disable-mproc True)")
    from . import serial_state
    from .session import MprocSession
    from .verbose import log

    serial_state.record()  # before any process of ours changes a disposition for itself
    from . import plugin_state

    plugin_state.configure_main(config)
    from . import collection_order

    collection_order.register(config)

    log(f"--cores {cores}: {workers} workers" + (f", multi-host {multihost[0]}" if multihost else ""))
    config.pluginmanager.register(MprocSession(config, workers, multihost), "mproc-session")


def _multihost(as_main: str | None, as_worker: str | None, workers: int):
    """Validates the multi-host options; None for a single-host run."""
    from . import auth, ports

    if as_main is None and as_worker is None:
        return None
    if as_main is not None and as_worker is not None:
        raise ValueError("--as-main and --as-worker cannot be combined: a process is one or the other")
    if as_worker is not None:
        if not workers:
            raise ValueError("--as-worker needs --cores N (or --num_cores N): the number of workers on this node")
        host, port = options.parse_address(as_worker, "--as-worker")
        role = "worker"
    else:
        host, port = options.parse_address(as_main, "--as-main", need_port=False)
        port = ports.choose(port)
        role = "main"
    try:
        token, generated = auth.token(role)
    except auth.TokenError as e:
        raise ValueError(str(e)) from None
    return (role, host, port, token, generated)
