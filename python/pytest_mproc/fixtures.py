"""Run-wide (`global_fixture`) and node-wide (`node_fixture`) fixtures.

With --cores, the function of a global or node fixture runs exactly once per run (per node for
node fixtures), in the process that coordinates the node, never in a worker; its value is
pickled into the node's shared-memory fixture store and every worker reads it from there. A
generator fixture's teardown runs once, after the last test of the run (node) has finished.
Without --cores both are plain session fixtures.

    from pytest_mproc.fixtures import global_fixture, node_fixture

    @global_fixture()
    def database():
        server = start_db()
        yield server.url          # must pickle
        server.stop()
"""

from __future__ import annotations

import functools
import inspect
import pickle
from dataclasses import dataclass, field

import pytest

GLOBAL = "global"
NODE = "node"


@dataclass
class FixtureSpec:
    kind: str
    name: str
    func: object
    argnames: tuple
    misuse: list = field(default_factory=list)
    host: str | None = None
    port: int | None = None

    @property
    def key(self) -> str:
        return f"{self.kind}:{self.name}"


#: every global/node fixture defined so far, by fixture name
REGISTRY: dict[str, FixtureSpec] = {}

# Set in worker processes of a --cores run: the node's fixture store (pytest_mproc._core.Store).
_store = None
_cache: dict[str, object] = {}


class FixtureSetupError(Exception):
    """A global or node fixture failed in setup (or its value could not be shared)."""


def use_store(store) -> None:
    global _store
    _store = store
    _cache.clear()


def _fetch(spec: FixtureSpec):
    if spec.key in _cache:
        return _cache[spec.key]
    data = _store.get(spec.key)
    if data is None:
        raise FixtureSetupError(f"{spec.kind} fixture {spec.name!r} was not set up by pytest-mproc (internal error)")
    if data[:1] == b"E":
        raise FixtureSetupError(data[1:].decode("utf-8", "replace"))
    value = pickle.loads(data[1:])
    _cache[spec.key] = value
    return value


def _decorator(kind: str, kwargs: dict):
    # One value per run (global) or per node: no scope of its own, no parametrization.
    forbidden = ("scope", "autouse", "params") if kind == GLOBAL else ("scope", "params")
    misuse = [k for k in forbidden if k in kwargs]
    host = kwargs.pop("host", None) if kind == GLOBAL else None
    port = kwargs.pop("port", None) if kind == GLOBAL else None
    fixture_kwargs = {k: v for k, v in kwargs.items() if k not in forbidden}

    def wrap(func):
        name = fixture_kwargs.get("name") or func.__name__
        argnames = tuple(
            p.name for p in inspect.signature(func).parameters.values()
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.default is p.empty
        )
        spec = FixtureSpec(kind, name, func, argnames, misuse, host, port)
        REGISTRY[name] = spec

        @functools.wraps(func)
        def fixture(*args, **kw):
            if _store is not None:
                yield _fetch(spec)
            elif inspect.isgeneratorfunction(func):
                yield from func(*args, **kw)
            else:
                yield func(*args, **kw)

        return pytest.fixture(scope="session", **fixture_kwargs)(fixture)

    return wrap


def global_fixture(**kwargs):
    """A fixture computed once per run across all workers and nodes. Takes pytest.fixture's
    keyword arguments except `scope` and `autouse`, plus `host`/`port` (where the global fixture
    service listens in multi-host runs). It may depend only on other global fixtures; its value
    must pickle."""
    return _decorator(GLOBAL, dict(kwargs))


def node_fixture(**kwargs):
    """A fixture computed once per node and shared by all workers of that node. Takes
    pytest.fixture's keyword arguments except `scope` (`autouse` is allowed). It may depend only
    on global and node fixtures; its value must pickle."""
    return _decorator(NODE, dict(kwargs))


def validate() -> None:
    """Usage errors for misdeclared global/node fixtures (raised once collection is done)."""
    for spec in REGISTRY.values():
        if spec.misuse:
            why = ("a global/node fixture has exactly one value, so it cannot be parametrized"
                   if spec.misuse == ["params"] else f"a {spec.kind} fixture has its own scope")
            raise pytest.UsageError(
                f"{spec.kind}_fixture {spec.name!r}: {', '.join(repr(m) for m in spec.misuse)} cannot be "
                f"given ({why})"
            )
        allowed = (GLOBAL,) if spec.kind == GLOBAL else (GLOBAL, NODE)
        for dep in spec.argnames:
            dep_spec = REGISTRY.get(dep)
            if dep_spec is None or dep_spec.kind not in allowed:
                what = "global" if spec.kind == GLOBAL else "global or node"
                raise pytest.UsageError(
                    f"{spec.kind} fixture {spec.name!r} depends on {dep!r}, which is not a {what} fixture "
                    f"(a {spec.kind} fixture can only use {what} fixtures)"
                )
