"""A worker process: forked from the fork server after collection, it pulls units from the
node ring, runs them through pytest's own runtest protocol and streams the reports back.
Nothing here re-collects: the worker shares the collected `session.items` with the main."""

from __future__ import annotations

import faulthandler
import os
import pickle
import signal
import sys

import pytest
from _pytest.outcomes import Exit

from . import _core, fixtures, gc_freeze, live_log, messages, plain_reports, serial_state, setup_show, xdist_protocol
from .hang_report import DUMP_SIGNAL
from .nextitem import LazyNextItem
from .replay import only_pytest_implements
from .tmpdirs import give_worker_its_own_basetemp
from .verbose import keep_terminal_stderr, log

# Plugins whose job is reporting in the main process; in a worker they would only burn CPU
# (or write files/terminal output the main already writes from the replayed reports).
_MAIN_ONLY_PLUGINS = ("terminalreporter", "lfplugin", "nfplugin", "stepwiseplugin", "mproc-session",
                      "pytest-mproc-syrupy-main", "pytest-mproc-collection-order")



class _Collector:
    """Collects what the worker must send for one test: reports and warnings."""

    def __init__(self) -> None:
        self.reports: list = []
        self.warnings: list = []

    @pytest.hookimpl(trylast=True)
    def pytest_runtest_logreport(self, report) -> None:
        self.reports.append(report)

    @pytest.hookimpl(trylast=True)
    def pytest_warning_recorded(self, warning_message, when, nodeid, location) -> None:
        self.warnings.append(_portable_warning(warning_message, when, nodeid, location))


def _portable_warning(wm, when, nodeid, location) -> tuple:
    message = wm.message
    try:
        pickle.dumps(message)
    except Exception:
        message = str(message)
    return (message, getattr(wm.category, "__module__", ""), wm.category.__qualname__,
            str(wm.filename), wm.lineno, when, nodeid, location)


def _isolate_process(config, wid: str, rundir: str, fork_server_pid: int, shared: tuple) -> None:
    """Make this forked copy of the main a proper worker (private capture files, own stderr file,
    dies with the fork server, no main-only reporting plugins), whose tests see the process a
    serial run gives them (serial_state.py): the main's signal dispositions and mask, and no
    descriptor of the node's shared memory (`shared`: its rings and store; the mappings stay)."""
    if _core.set_parent_death_signal(signal.SIGKILL) != fork_server_pid:
        os._exit(3)  # the fork server died while we were being born
    serial_state.restore()
    for segment in shared:
        segment.close_fd()
    os.environ["PTMPROC_WORKER"] = "1"
    os.environ["PTMPROC_WORKER_ID"] = wid
    capman = config.pluginmanager.getplugin("capturemanager")
    capturing = capman is not None and getattr(capman, "_global_capturing", None) is not None
    if capturing:
        # The capture tmpfiles are inherited from the main: shared by every worker they
        # would mix the output of concurrent tests. Drop them without reading them.
        capman._global_capturing.stop_capturing()
        capman._global_capturing = None
    if config.getoption("capture", "fd") != "no":
        # Output outside tests (and a segfault's traceback) goes to a per-worker file that the
        # main shows when the worker crashes. Under -s the user wants it on the terminal.
        keep_terminal_stderr()
        fd = os.open(os.path.join(rundir, f"{wid}.stderr"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.dup2(fd, 2)
        os.close(fd)
    _point_faulthandler_at_stderr(config)
    if capturing:
        capman.start_global_capturing()
        capman.suspend_global_capture()
    pm = config.pluginmanager
    for name in _MAIN_ONLY_PLUGINS:
        plugin = pm.get_plugin(name)
        if plugin is not None:
            pm.unregister(plugin)
    try:
        from _pytest.junitxml import xml_key

        xml = config.stash.get(xml_key, None)
        if xml is not None:
            pm.unregister(xml)
    except ImportError:
        pass
    # -x / --maxfail count failures over the whole run (a counter in the ring header, see
    # run()); pytest's per-process count in this worker must not stop it on its own.
    config.option.maxfail = 0


def _plugin_output_file(config, rundir: str, wid: str):
    """Where what plugins print through a worker's terminal writer goes: the worker's stderr
    file (shown when it crashes), or the terminal under -s."""
    if config.getoption("capture", "fd") == "no":
        return sys.stderr
    return xdist_protocol.LazyFile(os.path.join(rundir, f"{wid}.stderr"))


def _point_faulthandler_at_stderr(config) -> None:
    """A segfault's traceback must reach the worker's stderr file even while capture points fd 2
    at a capture file, so faulthandler writes to a descriptor of its own. pytest's faulthandler
    plugin already holds one (a copy of the main's stderr): it is pointed at the worker's stderr
    instead of adding a descriptor a serial run does not have."""
    fd = None
    try:
        from _pytest.faulthandler import fault_handler_stderr_fd_key

        fd = config.stash.get(fault_handler_stderr_fd_key, None)
    except ImportError:
        pass
    if fd is not None:
        os.dup2(2, fd)
    else:  # faulthandler plugin disabled (-p no:faulthandler): one descriptor of our own
        fd = os.dup(2)
    faulthandler.enable(file=fd, all_threads=True)
    # The supervisor asks for this worker's stack with DUMP_SIGNAL (hang_report.py).
    faulthandler.register(DUMP_SIGNAL, file=fd, all_threads=True)


# Header word of the tasks ring counting failed tests over all workers (for -x / --maxfail).
FAILURES_WORD = 0


def run(session, wid: str, workerinput: dict, tasks: _core.Ring, results: _core.Ring,
        store: _core.Store, rundir: str, fork_server_pid: int, control: _core.Ring) -> int:
    """The worker's whole life; returns its exit code. Test results (and, at the end, what its
    plugins published in `config.workeroutput`) go to `results`; life-cycle messages (up,
    finished) to `control` (the same ring on a single host; on a worker node the bridge
    forwards `results` while the node's main process reads `control`)."""
    config = session.config
    maxfail = config.option.maxfail
    _isolate_process(config, wid, rundir, fork_server_pid, (tasks, results, control, store))
    fixtures.use_store(store)
    gc_freeze.in_worker()
    give_worker_its_own_basetemp(config, wid)
    xdist_protocol.become_worker(config, workerinput,
                                 setup_show.worker_file(config, _plugin_output_file(config, rundir, wid)))
    collector = _Collector()
    config.pluginmanager.register(collector, "mproc-worker-collector")
    # pytest_warning_recorded is a historic hook: registering replayed to the collector every
    # warning recorded before the fork (collection's), which the main reports itself.
    collector.warnings.clear()
    to_serializable = _serializer(config)
    items = session.items
    slot = tasks.lease_claim()
    # On a worker node, results name the node too (for the main's timeline).
    node = os.environ.get("PTMPROC_NODE_NAME")
    encode_result = result_encoder(config, wid, node)
    live_log.install_in_worker(config, results, wid, node or "")
    control.push(messages.encode((messages.UP, wid, os.getpid())))
    log(f"worker {wid} up")
    prof = None
    if os.environ.get("PTMPROC_PROFILE_DIR"):
        import cProfile
        prof = cProfile.Profile()
        prof.enable()
    unit = _next_unit(tasks, slot)
    while unit is not None and not tasks.aborted:
        lazy = None
        for pos, index in enumerate(unit):
            if pos and tasks.aborted:
                break  # -x inside a group: its remaining tests are not started
            tasks.lease_set(slot, index)
            item = items[index]
            if pos + 1 < len(unit):
                nextitem = items[unit[pos + 1]]
            else:
                nextitem = lazy = LazyNextItem(tasks, slot, items)
            try:
                item.ihook.pytest_runtest_protocol(item=item, nextitem=nextitem)
            except (KeyboardInterrupt, Exit) as e:
                # Uncaught in the test (or pytest.exit()): as in a serial run, the whole run ends
                # (the main replays what this test reported so far and shows the interrupt's
                # location, or ends the session with the same Exit).
                _report_interrupt(config, results, wid, index, collector, to_serializable, e)
                _teardown_all(session)
                return 0
            if maxfail and _failed(collector.reports):
                # Stop new tests everywhere at once instead of waiting for the main to see it.
                if tasks.user_add(FAILURES_WORD, 1) + 1 >= maxfail:
                    tasks.abort()
            results.push(encode_result(index, item, collector.reports, collector.warnings))
            collector.reports = []
            collector.warnings = []
            # Worker-side stop flags mean nothing: the main decides -x for the whole run.
            session.shouldfail = False
            session.shouldstop = False
        tasks.lease_set(slot, None)
        unit = lazy.take() if lazy is not None else None
        if unit is None:
            # The unit is done: drop the lease's copy, so a death from here on hands back
            # nothing (a worker node re-queues what `heal` hands back without asking the main).
            tasks.ack(slot)
            unit = _next_unit(tasks, slot)
    _teardown_all(session)
    workeroutput = xdist_protocol.finish_worker(session)
    results.push(messages.encode((messages.WORKER_OUTPUT, wid, workerinput, workeroutput)))
    if prof is not None:
        prof.disable()
        prof.dump_stats(os.path.join(os.environ["PTMPROC_PROFILE_DIR"], f"{wid}.prof"))
    _finish_coverage()
    t = os.times()
    import resource

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # PSS (a read of smaps_rollup, ~3 ms in a 200 MB worker) only for PTMPROC_STATS_FILE.
    pss = _pss_kb() if os.environ.get("PTMPROC_STATS_FILE") else 0
    control.push(messages.encode((messages.FINISHED, wid, t.user + t.system, rss, pss)))
    log(f"worker {wid} done: cpu {t.user + t.system:.2f}s, max rss {rss // 1024} MiB")
    return 0


def _report_interrupt(config, results, wid, index, collector, to_serializable, e) -> None:
    from _pytest._code import ExceptionInfo

    reports = [to_serializable(r) for r in collector.reports]
    if isinstance(e, Exit):  # the main ends its session with the same Exit (no repr needed)
        rep = pickle.dumps(None)
        tail = ((str(e.msg), e.returncode if isinstance(e.returncode, int) else None),)
    else:
        tail = ()
        try:
            rep = pickle.dumps(ExceptionInfo.from_exception(e).getrepr(funcargs=True))
        except Exception:
            rep = pickle.dumps(None)
    results.push(messages.encode((messages.INTERRUPTED, wid, index, reports, rep) + tail))


def result_encoder(config, wid: str, node: str | None):
    """encode(index, item, reports, warnings) -> the results-ring bytes of a finished test: a
    messages.PASSED for a plain passed test (plain_reports.py), else a messages.RESULT."""
    to_serializable = _serializer(config)
    plain_ok = plain_reports.usable(config)
    result_head, passed_head, tail = (messages.RESULT, wid), (messages.PASSED, wid), ((node,) if node else ())
    dumps, protocol = pickle.dumps, pickle.HIGHEST_PROTOCOL

    def encode(index: int, item, reports: list, warnings: list) -> bytes:
        plain = plain_reports.compact(reports, warnings) if plain_ok else None
        if plain is not None:
            return dumps(passed_head + (index, item.location) + plain + tail, protocol)
        return dumps(result_head + (index, [to_serializable(r) for r in reports], warnings, item.location) + tail,
                     protocol)

    return encode


def _serializer(config):
    """report -> dict, as pytest_report_to_serializable makes it (directly when only pytest
    implements that hook: one plugin dispatch less per report)."""
    from . import longrepr
    from .plugin_state import before_encode

    hook = config.hook.pytest_report_to_serializable
    shown = setup_show.capture(config)

    def finish(report, data):
        before_encode(config, report, data)
        if shown is not None:
            shown.put(report, data)
        return longrepr.keep(report, data)

    if not only_pytest_implements(hook):
        return lambda report: finish(report, hook(config=config, report=report))
    from _pytest.reports import TestReport

    def to_serializable(report):
        if type(report) is not TestReport:
            return finish(report, hook(config=config, report=report))
        data = report._to_json()
        data["$report_type"] = "TestReport"
        return finish(report, data)

    return to_serializable


def _pss_kb() -> int:
    """Proportional set size: memory shared copy-on-write with the main counts only in part."""
    try:
        with open("/proc/self/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _failed(reports) -> bool:
    """Does this test count as failed for --maxfail (as pytest's Session counts it)?"""
    return any(r.failed and not hasattr(r, "wasxfail") for r in reports)


def _teardown_all(session) -> None:
    """Tears down fixtures kept up for a next test that will not run here (stop or abort)."""
    try:
        session._setupstate.teardown_exact(None)
    except BaseException as e:  # noqa: BLE001 - nothing to attribute it to any more
        log(f"teardown after the last test failed: {e!r}")


def _next_unit(tasks: _core.Ring, slot: int) -> list[int] | None:
    try:
        data = tasks.pop_leased(slot)
    except _core.RingClosed:
        return None
    return messages.decode_unit(data)


def _finish_coverage() -> None:
    """Save this worker's coverage data to its own file for the main's combine step (the
    forked collector still points at the main's data file, which it must not clobber)."""
    coverage = sys.modules.get("coverage")
    if coverage is None:  # not measuring: do not pay for importing it
        return
    cov = coverage.Coverage.current()
    if cov is None:
        return
    try:
        cov.stop()
        data = cov.get_data()
        out = coverage.CoverageData(basename=cov.config.data_file, suffix=True)
        out.update(data)
        out.write()
    except Exception as e:  # never lose test results over coverage bookkeeping
        log(f"could not save worker coverage: {e!r}")
