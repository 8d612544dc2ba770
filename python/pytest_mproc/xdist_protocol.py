"""pytest-xdist's plugin protocol, spoken whether or not xdist is installed, so plugins that
support xdist work under `--cores` unchanged:

- in a worker: `config.workerinput` (workerid, workercount, testrunuid, mainargv),
  `config.workeroutput` (a dict plugins fill), the `PYTEST_XDIST_WORKER`,
  `PYTEST_XDIST_WORKER_COUNT` and `PYTEST_XDIST_TESTRUNUID` environment variables, a quiet
  terminal reporter (plugins look for one), and `pytest_sessionfinish` at the worker's end,
  after which `workeroutput` travels to the main;
- in the main: `pytest_configure_node(node)` before a worker starts (in the fork server, which
  is a copy of the main) and `pytest_testnodedown(node, error)` when it has ended, with
  `node.workeroutput`, `node.workerinput`, `node.gateway.id` and `node.config`;
  `pytest_handlecrashitem(crashitem, report, sched)` for a test that crashed its worker;
- the `worker_id` and `testrun_uid` fixtures (the same as xdist's: whichever pytest picks
  when both are there, they agree).
"""

from __future__ import annotations

import os
import pickle
import sys
import uuid
from types import SimpleNamespace

import pytest

try:
    import xdist.newhooks  # noqa: F401

    XDIST_INSTALLED = True
except ImportError:
    XDIST_INSTALLED = False


def xdist_active(pluginmanager) -> bool:
    """Is pytest-xdist installed and not disabled (`-p no:xdist`)? Then its own hookspecs
    are registered."""
    return XDIST_INSTALLED and not (pluginmanager.is_blocked("xdist") or pluginmanager.is_blocked("xdist.plugin"))


class XdistHookspecs:
    """xdist's hooks that plugins implement, declared when xdist itself is not installed
    (same names and arguments as xdist.newhooks)."""

    @pytest.hookspec()
    def pytest_configure_node(self, node):
        """A worker is about to start; plugins may add to node.workerinput."""

    @pytest.hookspec()
    def pytest_testnodedown(self, node, error):
        """A worker has ended; node.workeroutput holds what its plugins published."""

    @pytest.hookspec(firstresult=True)
    def pytest_handlecrashitem(self, crashitem, report, sched):
        """A test crashed its worker; `sched.mark_test_pending(crashitem)` runs it again."""


def add_hookspecs(pluginmanager) -> None:
    if not xdist_active(pluginmanager):
        pluginmanager.add_hookspecs(XdistHookspecs)


# pytest-cov: its controller-side xdist hooks expect its xdist mode (DistMaster); under
# `--cores` coverage is handled by pytest-mproc itself (each worker saves its data file, the
# main's pytest-cov combines them), so they are not called.
_HANDLED_HERE = ("_cov",)


def _hook(config, name: str):
    """The hook caller for `name`, without the plugins whose part pytest-mproc does itself;
    None when no hookspec of that name exists."""
    if getattr(config.hook, name, None) is None:
        return None
    pm = config.pluginmanager
    skip = [p for p in (pm.get_plugin(n) for n in _HANDLED_HERE) if p is not None]
    return pm.subset_hook_caller(name, skip) if skip else getattr(config.hook, name)


class WorkerNode:
    """What xdist hands plugins as `node` (a WorkerController), as far as plugins use it."""

    def __init__(self, config, wid: str, workerinput: dict, workeroutput: dict | None = None) -> None:
        self.config = config
        self.workerinput = workerinput
        self.gateway = SimpleNamespace(id=wid)
        if workeroutput is not None:
            self.workeroutput = workeroutput

    def __repr__(self) -> str:
        return f"<pytest-mproc WorkerNode {self.gateway.id}>"


def workerinput(config, wid: str, count: int, testrunuid: str) -> dict:
    """A worker's workerinput, after plugins had their say (pytest_configure_node)."""
    node = WorkerNode(config, wid, {"workerid": wid, "workercount": count, "testrunuid": testrunuid,
                                    "mainargv": list(sys.argv)})
    hook = _hook(config, "pytest_configure_node")
    if hook is not None:
        hook(node=node)
    return node.workerinput


# ---- worker side ----

# In workeroutput: a plugin's exception at the worker's end (the main shows it in the summary).
ERROR_KEY = "_pytest_mproc_error"

def become_worker(config, workerinput_: dict, terminal_file) -> None:
    os.environ["PYTEST_XDIST_WORKER"] = workerinput_["workerid"]
    os.environ["PYTEST_XDIST_WORKER_COUNT"] = str(workerinput_["workercount"])
    os.environ["PYTEST_XDIST_TESTRUNUID"] = workerinput_["testrunuid"]
    from . import plugin_state

    config.workerinput = workerinput_
    config.workeroutput = {}
    _install_quiet_terminal_reporter(config, terminal_file)
    plugin_state.worker_setup(config)


class LazyFile:
    """The worker's stderr file, opened only if something is written (no descriptor otherwise)."""

    def __init__(self, path: str) -> None:
        self._path = path
        self._f = None

    def _file(self):
        if self._f is None:
            self._f = open(self._path, "a", encoding="utf-8", errors="replace")
        return self._f

    def write(self, s: str) -> int:
        return self._file().write(s)

    def flush(self) -> None:
        if self._f is not None:
            self._f.flush()

    def isatty(self) -> bool:
        return False


def _install_quiet_terminal_reporter(config, file) -> None:
    """Plugins call config.get_terminal_writer() (pytest-timeout's stack dump) or look for the
    terminal reporter (hypothesis). A worker gets one that implements no hooks (it reports
    nothing; the main reports everything) and writes what plugins print through it to `file`."""
    from _pytest.terminal import TerminalReporter

    tr = TerminalReporter(config, file)
    for name in dir(tr):
        if name.startswith("pytest_"):
            setattr(tr, name, None)  # pluggy registers no hook implementation for a non-routine
    config.pluginmanager.register(tr, "terminalreporter")


def finish_worker(session, exitstatus: int = 0) -> dict:
    """The worker's end, as an xdist worker's: pytest_sessionfinish runs (plugins publish into
    workeroutput), then workeroutput is returned for the main (entries that cannot be pickled
    are dropped, with a note in '_pytest_mproc_dropped')."""
    from . import plugin_state

    config = session.config
    plugin_state.worker_output(config)
    out = config.workeroutput
    out["exitstatus"] = int(exitstatus)
    out["shouldfail"] = session.shouldfail
    out["shouldstop"] = session.shouldstop
    try:
        config.hook.pytest_sessionfinish(session=session, exitstatus=exitstatus)
    except Exception as e:  # a plugin's end-of-session failure must not cost the run's results
        import traceback

        out[ERROR_KEY] = (f"a plugin failed at the end of worker {config.workerinput['workerid']}:\n"
                          + "".join(traceback.format_exception(type(e), e, e.__traceback__)))
    portable, dropped = {}, []
    for key, value in out.items():
        try:
            pickle.dumps(value)
            portable[key] = value
        except Exception:
            dropped.append(key)
    if dropped:
        portable["_pytest_mproc_dropped"] = dropped
    return portable


# ---- main side ----

def node_down(config, wid: str, workerinput_: dict, workeroutput: dict | None, error: str | None) -> str | None:
    """Hands a finished worker's output to plugins; returns a plugin error to show, if any."""
    from . import plugin_state

    if workeroutput:
        plugin_state.from_worker(config, workeroutput)
    node = WorkerNode(config, wid, workerinput_, workeroutput if workeroutput is not None else {})
    hook = _hook(config, "pytest_testnodedown")
    if hook is not None:
        hook(node=node, error=error)
    return (workeroutput or {}).get(ERROR_KEY)


class CrashScheduler:
    """`sched` of pytest_handlecrashitem: lets a plugin (pytest-rerunfailures) run a crashed
    test again."""

    def __init__(self, config, rerun) -> None:
        self.config = config
        self._rerun = rerun

    def mark_test_pending(self, nodeid: str) -> None:
        self._rerun(nodeid)


def handle_crash(config, nodeid: str, report, rerun) -> None:
    hook = _hook(config, "pytest_handlecrashitem")
    if hook is not None:
        hook(crashitem=nodeid, report=report, sched=CrashScheduler(config, rerun))


# ---- fixtures: the same as xdist's (whichever pytest picks, they agree) ----

@pytest.fixture(scope="session")
def worker_id(request) -> str:
    """The id of the current worker ('gw0', 'gw1', ...), or 'master' outside workers."""
    wi = getattr(request.config, "workerinput", None)
    return wi["workerid"] if wi else "master"


@pytest.fixture(scope="session")
def testrun_uid(request) -> str:
    """One id shared by every worker of this run."""
    wi = getattr(request.config, "workerinput", None)
    return wi["testrunuid"] if wi else uuid.uuid4().hex
