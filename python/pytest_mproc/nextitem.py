"""A lazily decided `nextitem` for pytest's runtest protocol.

pytest tears down fixtures after a test according to `nextitem`: whatever the next test does
not share is torn down. xdist therefore holds one test back per worker until it knows the next
one, and the original pytest_mproc passed None (rebuilding every module/session fixture for
every test). We pass this proxy instead: it takes the next unit from the ring only when pytest
asks, in the teardown of the current test, so no test is held back while it runs, and
fixtures shared with the next test stay up.
"""

from __future__ import annotations

from . import _core
from .messages import decode_unit


class LazyNextItem:
    __slots__ = ("_tasks", "_slot", "_items", "_resolved", "_unit")

    def __init__(self, tasks: _core.Ring, slot: int, items: list) -> None:
        self._tasks = tasks
        self._slot = slot
        self._items = items
        self._resolved = False
        self._unit: list[int] | None = None

    def _resolve(self):
        if not self._resolved:
            self._resolved = True
            try:
                data = self._tasks.pop_leased(self._slot, timeout=0)
            except _core.RingClosed:
                data = None
            # Nothing queued right now: tear everything down (as at the end of a serial run);
            # the worker will wait for more work, or exit when the ring closes.
            self._unit = decode_unit(data) if data is not None else None
        return self._items[self._unit[0]] if self._unit else None

    def __bool__(self) -> bool:
        return self._resolve() is not None

    def __getattr__(self, name):
        item = self._resolve()
        if item is None:
            raise AttributeError(name)
        return getattr(item, name)

    def __repr__(self) -> str:
        return f"<LazyNextItem {self._resolve()!r}>"

    def take(self) -> list[int] | None:
        """The unit pytest's teardown was prepared for, or None if it was not decided."""
        return self._unit if self._resolved else None
