"""The compact form of the most common result: a test that passed in setup, call and teardown
with nothing else to show.

A worker sends such a test as a messages.PASSED tuple (its keywords and the nine phase times)
instead of three JSON-shaped report dicts; the main builds the three TestReports directly, with
the attributes pytest's own constructor gives them, in the same order. Every hook still sees
three real TestReports; only the (de)serialization is skipped.

"Plain" is decided here, once, for both sides (`compact`): exactly the three phases of a
TestReport (not a subclass), each passed, no longrepr, no captured-output sections, no user
properties, no attribute beyond the constructor's (a plugin that adds one to the report keeps
the full path), the same keywords in all three, and no warnings. Everything else (failures,
skips, output, plugin attributes) travels the full path, as do all reports when a plugin
implements pytest_report_to_serializable or pytest_report_from_serializable.
"""

from __future__ import annotations

from _pytest.reports import TestReport

_WHENS = ("setup", "call", "teardown")

# What pytest's constructor sets, in its order (pytest 8: `nodeid`; pytest 9: `_id`, a NodeId).
_TEMPLATE = TestReport("t.py::t", ("t.py", 0, "t"), {}, "passed", None, "setup").__dict__
_KEYS = frozenset(_TEMPLATE)
_ID_KEY = "_id" if "_id" in _TEMPLATE else "nodeid"
_REQUIRED = {_ID_KEY, "location", "keywords", "outcome", "longrepr", "when", "user_properties", "sections",
             "duration", "start", "stop"}
# The template of each phase's report: the attributes of one pytest made, so that a copy shares
# TestReport's attribute names as pytest's own reports do (a split dict: ~190 bytes a report
# less than a dict of its own).
_PHASES = tuple(TestReport("t.py::t", ("t.py", 0, "t"), {}, "passed", None, when).__dict__ for when in _WHENS)
_new = TestReport.__new__
# A pytest whose reports carry something else is not sent in the compact form.
SUPPORTED = _KEYS == _REQUIRED


def usable(config) -> bool:
    """May this process send plain passed tests in the compact form? Not when a plugin takes
    part in serializing reports (it would not see them), nor under --setup-show (its lines
    travel with each report, setup_show.py)."""
    from . import setup_show
    from .direct_hooks import fast_paths_off
    from .replay import only_pytest_implements

    hook = config.hook
    serializing = (hook.pytest_report_to_serializable, hook.pytest_report_from_serializable)
    return (SUPPORTED and not fast_paths_off() and not setup_show.on(config)
            and all(only_pytest_implements(h) for h in serializing))


def compact(reports: list, warnings: list):
    """(keywords, times) if `reports` are a plain passed test's (see the module doc), else None."""
    if not SUPPORTED or warnings or len(reports) != 3:
        return None
    setup, call, teardown = reports
    keywords = call.keywords
    for rep, when in zip(reports, _WHENS):
        if (type(rep) is not TestReport or rep.when != when or rep.outcome != "passed" or rep.longrepr is not None
                or rep.sections or rep.user_properties or rep.__dict__.keys() != _KEYS or rep.keywords != keywords):
            return None
    return (tuple(keywords), (setup.duration, setup.start, setup.stop, call.duration, call.start, call.stop,
                              teardown.duration, teardown.start, teardown.stop))


def build(item, location: tuple, keywords: tuple, times: tuple) -> list:
    """The three TestReports of a plain passed test, as pytest's constructor makes them."""
    if not SUPPORTED:  # a worker node with another pytest sent it: the constructor, then
        return [TestReport(item.nodeid, location, dict.fromkeys(keywords, 1), "passed", None, when,
                           duration=times[3 * i], start=times[3 * i + 1], stop=times[3 * i + 2])
                for i, when in enumerate(_WHENS)]
    # pytest 9 hands reports the item's own NodeId; pytest 8 its node id string.
    node_id = item.nodeid if _ID_KEY == "nodeid" else getattr(item, "_id", None) or _coerce(item.nodeid)
    reports = []
    i = 0
    keyword_dict = dict.fromkeys(keywords, 1)
    for template in _PHASES:
        d = template.copy()  # outcome "passed", longrepr None, the phase, in the constructor's key order
        d[_ID_KEY] = node_id
        d["location"] = location
        d["keywords"] = keyword_dict.copy()  # each report its own, as pytest's
        d["user_properties"] = []
        d["sections"] = []
        d["duration"] = times[i]
        d["start"] = times[i + 1]
        d["stop"] = times[i + 2]
        i += 3
        rep = _new(TestReport)
        rep.__dict__ = d
        reports.append(rep)
    return reports


def _coerce(nodeid: str):
    from _pytest.nodeid import coerce_node_id

    return coerce_node_id(nodeid)
