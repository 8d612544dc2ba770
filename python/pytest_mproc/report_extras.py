"""What pytest-mproc sends beside pytest's own fields of a serialized report, under keys
prefixed `$pytest_mproc_`: a worker adds them after pytest (or a plugin) serialized the report;
the main takes them all out before the report is deserialized, so no deserializer, and no
attribute of the rebuilt report, ever sees them. Users: longrepr.py (a failure representation
pytest flattens to text), plugin_state.py (pytest's failed-subtest count)."""

from __future__ import annotations

PREFIX = "$pytest_mproc_"


def put(data: dict, name: str, value) -> None:
    """Worker: sends `value` as `name` with the serialized report `data`."""
    data[PREFIX + name] = value


def take(data: dict) -> dict:
    """Main: removes every extra from `data`; {name: value}."""
    names = [key for key in data if key.startswith(PREFIX)]
    return {key[len(PREFIX):]: data.pop(key) for key in names}
