"""Failure representations pytest's report serialization flattens to a string.

pytest serializes a report's longrepr structurally only when it is a traceback (it has
`reprtraceback` and `reprcrash`); any other representation object (a failed doctest's
`ReprFailDoctest`, a plugin's own `repr_failure` result) travels as its text. The terminal then
takes that text's first line for the short summary ("FAILED mod.py::mod.f - 026 "), where the
serial run, holding the object, shows no message. So a worker also ships such an object pickled,
beside the serialized report, and the main puts it back on the rebuilt report. If it cannot be
pickled or unpickled, the text stays (pytest's own behaviour, as under xdist).
"""

from __future__ import annotations

import pickle

from . import report_extras


def keep(report, data: dict) -> dict:
    """Worker: `data` (the serialized `report`) gains the longrepr object if pytest flattened it."""
    longrepr = getattr(report, "longrepr", None)
    if isinstance(data, dict) and longrepr is not None and not isinstance(longrepr, str) and isinstance(data.get("longrepr"), str):
        try:
            report_extras.put(data, "longrepr", pickle.dumps(longrepr, protocol=pickle.HIGHEST_PROTOCOL))
        except Exception:  # noqa: BLE001 - the text is what pytest would have sent anyway
            pass
    return data


def restore(report, extras: dict) -> None:
    """Main: puts the longrepr object `keep` sent (report_extras.take) back on the rebuilt report."""
    blob = extras.get("longrepr")
    if blob is None:
        return
    try:
        report.longrepr = pickle.loads(blob)
    except Exception:  # noqa: BLE001 - a class the main cannot load: the text stays
        pass
