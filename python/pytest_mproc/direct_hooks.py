"""The main's replay hooks (logstart, logreport, logfinish), called without pluggy's dispatch
when that is the same call.

The main fires five hooks per replayed test, and for a passed test pluggy's dispatch costs more
than what pytest's own implementations then do. When every implementation of such a hook is
pytest's own or this plugin's, and none wraps it (hookwrapper / wrapper=True), calling them
directly, in pluggy's order, with the arguments pluggy would pass, is the same call. Whenever a
third-party plugin or a conftest implements the hook, a wrapper is registered, or pluggy
traces calls (`--debug`, pytester's hook recorder), the hook goes through pluggy as usual. The
implementations are compared with the hook's current ones on every call, so a plugin
registered in the middle of a run is dispatched to at once.
"""

from __future__ import annotations

import os
import types

# Plugins whose hook implementations may be called directly: pytest's own and ours.
_OWN = ("_pytest.", "pytest_mproc.")


def fast_paths_off() -> bool:
    """PTMPROC_FULL_REPLAY=1 (a diagnostic): every hook through pluggy, every report in the
    full serialized form (plain_reports.py), to compare against or to rule the fast paths out."""
    return os.environ.get("PTMPROC_FULL_REPLAY", "").strip() not in ("", "0")


def _module(plugin) -> str:
    return plugin.__name__ if isinstance(plugin, types.ModuleType) else type(plugin).__module__


class DirectHook:
    """One hook of one hook relay (`config.hook`, or a directory's `ihook` that leaves out
    conftests of other directories). Called with the hook's arguments by position, in
    `argnames` order."""

    __slots__ = ("caller", "base", "pm", "argnames", "snapshot", "tracer", "calls", "direct", "dispatched")

    def __init__(self, pm, caller, argnames: tuple) -> None:
        self.pm = pm
        self.caller = caller
        # A directory's hook caller is a subset of the relay's: its implementations change
        # when the relay's do.
        self.base = getattr(caller, "_orig", caller)
        self.argnames = argnames
        self.snapshot = None
        self.tracer = None
        self.calls = None
        # How many calls went which way (the run's statistics, tests).
        self.direct = self.dispatched = 0

    def _plan(self):
        """[(function, argument positions or None for all in order)] in call order, or None:
        dispatch through pluggy."""
        if getattr(getattr(self.pm, "_inner_hookexec", None), "__name__", "") != "_multicall" or fast_paths_off():
            return None  # traced: the tracer must see the call
        calls = []
        for impl in reversed(self.caller.get_hookimpls()):
            if impl.hookwrapper or impl.wrapper or not _module(impl.plugin).startswith(_OWN):
                return None
            try:
                positions = tuple(self.argnames.index(name) for name in impl.argnames)
            except ValueError:
                return None  # asks for an argument this call does not have: pluggy's error
            calls.append((impl.function, None if positions == tuple(range(len(self.argnames))) else positions))
        return calls

    def __call__(self, *args) -> None:
        try:
            impls = self.base._hookimpls
            tracer = self.pm._inner_hookexec
        except AttributeError:  # a pluggy without these internals: always dispatch
            impls = tracer = None
        if impls is None or impls != self.snapshot or tracer is not self.tracer:
            self.snapshot = None if impls is None else list(impls)
            self.tracer = tracer
            self.calls = None if impls is None else self._plan()
        if self.calls is None:
            self.dispatched += 1
            self.caller(**dict(zip(self.argnames, args)))
            return
        self.direct += 1
        for function, positions in self.calls:
            if positions is None:
                function(*args)
            else:
                function(*[args[i] for i in positions])


class ReplayHooks:
    """The three hooks a replayed test fires, for each test file's directory (whose `ihook`
    leaves out the conftests of other directories, as pytest's own calls do)."""

    def __init__(self, config) -> None:
        self.pm = config.pluginmanager
        self._by_path: dict = {}

    def of(self, item) -> tuple:
        """(logstart, logreport, logfinish) for `item`."""
        conftests = len(getattr(self.pm, "_conftest_plugins", ()))
        entry = self._by_path.get(item.path)
        if entry is None or entry[0] != conftests:
            ihook = item.ihook
            entry = self._by_path[item.path] = (
                conftests,
                DirectHook(self.pm, ihook.pytest_runtest_logstart, ("nodeid", "location")),
                DirectHook(self.pm, ihook.pytest_runtest_logreport, ("report",)),
                DirectHook(self.pm, ihook.pytest_runtest_logfinish, ("nodeid", "location")),
            )
        return entry[1:]

    def counts(self) -> dict:
        """{hook name: [direct calls, calls through pluggy]} so far."""
        out: dict = {}
        for entry in self._by_path.values():
            for hook in entry[1:]:
                c = out.setdefault(hook.caller.name, [0, 0])
                c[0] += hook.direct
                c[1] += hook.dispatched
        return out
