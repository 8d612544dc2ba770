"""Sets up global and node fixtures in the node's coordinating process (the main on a single
host), exactly once, publishes their pickled values in the node's fixture store, and tears
them down after the last worker has finished."""

from __future__ import annotations

import inspect
import pickle
import time
import traceback

from .fixtures import GLOBAL, REGISTRY, FixtureSpec
from .verbose import log


class FixtureHost:
    # Told of every fixture set up here: (name, "global" | "node", start, stop) in time.time()
    # seconds (the run's timeline, timeline.py).
    on_set_up = None

    def __init__(self, store, remote_global=None) -> None:
        """`remote_global(key) -> bytes`: on a worker node, global fixtures are not set up here
        but fetched (as published by the main) through this function."""
        self.store = store
        self.remote_global = remote_global
        self.values: dict[str, object] = {}
        self.failed: dict[str, str] = {}
        self._generators: list[tuple[str, object]] = []

    @staticmethod
    def needed_by(item) -> list[str]:
        return [n for n in getattr(item, "fixturenames", ()) if n in REGISTRY]

    @staticmethod
    def used_by(items, kind: str) -> list[str]:
        """The `kind` (GLOBAL or NODE) fixtures any of `items` uses, in order of first use.
        pytest's fixture closure of a test already holds what its fixtures depend on."""
        order: dict[str, None] = {}
        for item in items:
            for n in FixtureHost.needed_by(item):
                if REGISTRY[n].kind == kind:
                    order.setdefault(n)
        return list(order)

    def ready(self, name: str) -> bool:
        return name in self.values or name in self.failed

    def build(self, name: str) -> None:
        """Sets up `name` (and, first, what it depends on) unless already done."""
        if self.ready(name):
            return
        spec = REGISTRY[name]
        if spec.kind == GLOBAL and self.remote_global is not None:
            data = self.remote_global(spec.key)
            if data[:1] == b"V":
                self.values[name] = pickle.loads(data[1:])
            else:
                self.failed[name] = data[1:].decode("utf-8", "replace")
            return
        for dep in spec.argnames:
            self.build(dep)
        broken = [d for d in spec.argnames if d in self.failed]
        if broken:
            self._fail(spec, f"{spec.kind} fixture {name!r} depends on {broken[0]!r}, which failed:\n"
                             f"{self.failed[broken[0]]}")
            return
        kwargs = {d: self.values[d] for d in spec.argnames}
        log(f"setting up {spec.kind} fixture {name}")
        started = time.time()
        try:
            self._set_up(spec, name, kwargs)
        finally:
            if FixtureHost.on_set_up is not None:
                FixtureHost.on_set_up(name, spec.kind, started, time.time())

    def _set_up(self, spec: FixtureSpec, name: str, kwargs: dict) -> None:
        try:
            if inspect.isgeneratorfunction(spec.func):
                gen = spec.func(**kwargs)
                value = next(gen)
                self._generators.append((name, gen))
            else:
                value = spec.func(**kwargs)
        except Exception as e:  # the user's error, shown with their traceback in every user
            self._fail(spec, f"{spec.kind} fixture {name!r} raised in setup:\n"
                             + "".join(traceback.format_exception(type(e), e, e.__traceback__)))
            return
        try:
            data = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as e:
            self._fail(spec, f"the value of {spec.kind} fixture {name!r} (type {type(value).__qualname__}) "
                             f"cannot be pickled, so it cannot be shared between processes: {e}")
            return
        self.values[name] = value
        self.store.put(spec.key, b"V" + data)

    def _fail(self, spec: FixtureSpec, text: str) -> None:
        self.failed[spec.name] = text
        self.store.put(spec.key, b"E" + text.encode())

    def teardown(self) -> list[str]:
        """Runs generator teardowns, last set up first. Returns error texts (never raises)."""
        errors = []
        while self._generators:
            name, gen = self._generators.pop()
            log(f"tearing down fixture {name}")
            try:
                next(gen)
            except StopIteration:
                continue
            except Exception as e:
                errors.append(f"teardown of fixture {name!r} failed:\n"
                              + "".join(traceback.format_exception(type(e), e, e.__traceback__)))
                continue
            errors.append(f"fixture {name!r} yielded more than once")
        return errors
