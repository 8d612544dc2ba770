"""What the main writes at the end in the order a serial run gives it: collection order.

Results arrive in the order tests finish, and pytest records them in arrival order: the
terminal reporter's stats (its FAILURES, ERRORS, warnings summary and short test summary
sections list reports in that order) and junitxml's test cases. Before either is written
(`pytest_sessionfinish`, before the terminal's summary and junitxml's file), the main sorts them
by the collection index of their test. Records of no collected test (collection errors and
warnings) keep their place before all others, as serially; a stats category holding an object
that names no test (a plugin's own) is left as it is.
"""

from __future__ import annotations

import pytest


class CollectionOrder:
    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionfinish(self, session) -> None:
        _terminal_stats(session.config, session.items)
        _junit_cases(session.config, session.items)


def _terminal_stats(config, items) -> None:
    tr = config.pluginmanager.get_plugin("terminalreporter")
    stats = getattr(tr, "stats", None)
    if not isinstance(stats, dict):
        return
    # Never shown: passed set-ups and tear-downs (""), and passed calls unless -rP/-rA asks
    # (sorting them would cost ~0.1 s at the end of a 64 000-test run).
    shown_passed = any(c in getattr(tr, "reportchars", "PA") for c in "PA")
    to_sort = [records for category, records in stats.items()
               if category != "" and (category != "passed" or shown_passed) and isinstance(records, list)
               and len(records) > 1 and all(isinstance(getattr(r, "nodeid", None), str) for r in records)]
    if not to_sort:
        return  # (an all-passed run: no index of the collected tests, ~30 ms per 64 000 tests)
    order = {item.nodeid: i for i, item in enumerate(items)}
    for records in to_sort:
        records.sort(key=lambda r: order.get(r.nodeid, -1))


def _junit_cases(config, items) -> None:
    try:
        from _pytest.junitxml import bin_xml_escape, mangle_test_address, xml_key
    except ImportError:
        return
    xml = config.stash.get(xml_key, None)
    reporters = getattr(xml, "node_reporters_ordered", None)
    if not isinstance(reporters, list):
        return
    try:
        # A finished test case keeps only its XML element: it is known by its classname and
        # name attributes, made from the node id as junitxml makes them.
        order: dict = {}
        for i, item in enumerate(items):
            names = mangle_test_address(item.nodeid)
            classnames = ([xml.prefix] if xml.prefix else []) + names[:-1]
            order.setdefault((".".join(classnames), str(bin_xml_escape(names[-1]))), i)

        def key(reporter):
            element = reporter.to_xml()
            return order.get((element.get("classname"), element.get("name")), -1)

        reporters.sort(key=key)
    except Exception:  # noqa: BLE001 - another junitxml: the file keeps arrival order
        return


def register(config) -> None:
    """On the main of a run (single host or multi-host)."""
    config.pluginmanager.register(CollectionOrder(), "pytest-mproc-collection-order")
