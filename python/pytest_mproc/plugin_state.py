"""State that some plugins keep in the process that runs the tests and read in the process that
reports, without going through xdist's protocol. Each case is small glue, named for its plugin;
everything else travels through the xdist protocol (xdist_protocol.py) and the reports.

- pytest's own subtests (pytest >= 9): the count of failed subtests per test lives in the
  config stash of the process that ran them (only the `subtests` fixture counts; a unittest
  `subTest` failure does not fail its test), and the main's terminal reporter reads it to fail
  the test ("contains 1 failed subtest"). The worker sends its count with the test's call
  report; the main sets it before the report is replayed.
  Its report deserialization also applies `saferepr` a second time to the subtest's
  parameters (`(i='1')`); the main keeps the worker's text as it was.
- syrupy: its xdist hooks are registered only when pytest-xdist is installed; without xdist the
  main registers them itself, so the snapshot report of every worker is merged. Its workers
  lock snapshot files while writing; the main removes the lock files the workers report, as
  syrupy's own xdist controller does (it decides that from `-n`, which a `--cores` run has not).
- pytest-metadata (pytest-html's): an xdist worker publishes its metadata in its own
  pytest_configure, which forked workers do not run again; the worker publishes it at its end.
- pytest-rerunfailures: in a worker (it sees `workerinput`) it logs the reports of a rerun
  only if it finds pytest-xdist >= 1.20 installed; without xdist a worker tells it that the
  protocol spoken is that of a current xdist.
- pytest's own junitxml: `record_testsuite_property` records into the LogXML object of the
  process running the test; a worker hands what it recorded to the main, which adds each
  (name, value) it does not have yet (a session fixture that records a property runs once
  per worker: the serial run's XML has it once). (Its test cases' order: collection_order.py.)
- pytest-benchmark: it disables itself under xdist; under --cores each worker hands its
  benchmark results to the main (workeroutput), which reports and saves them as a serial run
  would.
"""

from __future__ import annotations

import sys

_BENCHMARKS = "pytest_mproc_benchmarks"
_JUNIT_SUITE_PROPERTIES = "pytest_mproc_junit_suite_properties"


def worker_setup(config) -> None:
    """Called in a worker once it has its workerinput."""
    rerun = sys.modules.get("pytest_rerunfailures")
    if rerun is not None and hasattr(rerun, "works_with_current_xdist") and not rerun.works_with_current_xdist():
        rerun.works_with_current_xdist = lambda: True


def before_encode(config, report, data) -> None:
    """Called in a worker for every report it serializes (`data`)."""
    if getattr(report, "when", None) != "call" or not isinstance(data, dict):
        return
    try:
        from _pytest.subtests import failed_subtests_key
    except ImportError:
        return
    counts = config.stash.get(failed_subtests_key, None)
    count = counts.get(getattr(report, "id", None), 0) if counts is not None else 0
    if count:
        from . import report_extras

        report_extras.put(data, "failed_subtests", count)


def after_decode(config, report, data: dict, extras: dict) -> None:
    """Called on the main for every replayed report (`extras`: report_extras.take's)."""
    failed_subtests = extras.get("failed_subtests")
    if failed_subtests:
        from _pytest.subtests import failed_subtests_key

        config.stash[failed_subtests_key][report.id] = failed_subtests
    if data.get("_report_type") != "SubTestReport":
        return
    context = data.get("_subtest.context") or {}
    if isinstance(context.get("kwargs"), dict):
        object.__setattr__(report.context, "kwargs", dict(context["kwargs"]))


class _SyrupyMain:
    @staticmethod
    def pytest_sessionfinish(session) -> None:
        syrupy_session = getattr(session.config, "_syrupy", None)
        if syrupy_session is not None and hasattr(syrupy_session, "_cleanup_write_sidecars"):
            syrupy_session._cleanup_write_sidecars()


def configure_main(config) -> None:
    """Called on the main of a run (single host or multi-host) at configure time."""
    syrupy = config.pluginmanager.get_plugin("syrupy")
    if syrupy is not None and hasattr(syrupy, "DeferXDist"):
        if not any(type(p).__name__ == "DeferXDist" for p in config.pluginmanager.get_plugins()):
            config.pluginmanager.register(syrupy.DeferXDist(), "pytest-mproc-syrupy-xdist")
        config.pluginmanager.register(_SyrupyMain(), "pytest-mproc-syrupy-main")


class _BenchmarkFixture:
    """What the main's pytest-benchmark reads of a benchmark's fixture."""

    def __init__(self, fixture) -> None:
        self.has_error = getattr(fixture, "has_error", False)


def worker_output(config) -> None:
    """Called in a worker at its end, before its pytest_sessionfinish: moves what plugins keep
    here for the main into config.workeroutput."""
    import copy

    try:
        from pytest_metadata.plugin import metadata_key

        if metadata_key in config.stash:
            config.workeroutput["metadata"] = config.stash[metadata_key]
    except ImportError:
        pass
    bs = getattr(config, "_benchmarksession", None)
    if bs is not None and getattr(bs, "benchmarks", None):
        moved = []
        for bench in bs.benchmarks:
            b = copy.copy(bench)
            b.fixture = _BenchmarkFixture(bench.fixture)
            b.cprofile_stats = None if b.cprofile_stats is None else _portable_pstats(b.cprofile_stats)
            moved.append(b)
        config.workeroutput[_BENCHMARKS] = moved
        bs.benchmarks = []  # the main saves and reports them, once
    xml = _junit_xml(config)
    if xml is not None and getattr(xml, "global_properties", None):
        config.workeroutput[_JUNIT_SUITE_PROPERTIES] = list(xml.global_properties)


def _junit_xml(config):
    try:
        from _pytest.junitxml import xml_key
    except ImportError:
        return None
    return config.stash.get(xml_key, None)


def _portable_pstats(stats):
    try:
        import pickle

        pickle.dumps(stats)
        return stats
    except Exception:
        return None


def from_worker(config, workeroutput: dict) -> None:
    """Called on the main with each worker's workeroutput."""
    moved = workeroutput.get(_BENCHMARKS)
    bs = getattr(config, "_benchmarksession", None)
    if moved and bs is not None:
        bs.benchmarks.extend(moved)
    xml = _junit_xml(config)
    recorded = workeroutput.get(_JUNIT_SUITE_PROPERTIES)
    if xml is not None and recorded and isinstance(getattr(xml, "global_properties", None), list):
        for prop in recorded:  # (name, value), escaped by the worker's LogXML as the main's would
            if tuple(prop) not in xml.global_properties:
                xml.global_properties.append(tuple(prop))
