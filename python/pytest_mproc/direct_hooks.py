"""The main's replay hooks (logstart, logreport, logfinish, and pytest_report_teststatus, which
the terminal reporter asks for each report), called without pluggy's dispatch when that is the
same call.

The main fires eight hooks per replayed test, and for a passed test pluggy's dispatch costs more
than what pytest's own implementations then do. When every implementation of such a hook is
pytest's own or this plugin's, and none wraps it (hookwrapper / wrapper=True), calling them
directly, in pluggy's order, with the arguments pluggy would pass, is the same call. Whenever a
third-party plugin or a conftest implements the hook, a wrapper is registered, or pluggy
traces calls (`--debug`, pytester's hook recorder), the hook goes through pluggy as usual. The
implementations are compared with the hook's current ones on every call, so a plugin
registered in the middle of a run is dispatched to at once.

A direct call is one generated function per plan (`_compile`). A plain passed test
(plain_reports.py) whose three hooks and pytest_report_teststatus are all direct is replayed
with its plans checked once (`ReplayHooks.plain_calls`): nothing but pytest's and our code runs
from its logstart until its logfinish returns (the only hook pytest's implementations of the
three call is pytest_report_teststatus, itself direct then), so no plan can change in between.
pytest_report_teststatus also gives a result again (`DirectHook.known`/`memo`): while such a
test's reports are replayed, its answer for a phase is the one pytest's own implementations
gave the first plain report of that phase in the same plan.
"""

from __future__ import annotations

import functools
import os
import types

import pluggy

# Plugins whose hook implementations may be called directly: pytest's own and ours.
_OWN = ("_pytest.", "pytest_mproc.")


def fast_paths_off() -> bool:
    """PTMPROC_FULL_REPLAY=1 (a diagnostic): every hook through pluggy, every report in the
    full serialized form (plain_reports.py), to compare against or to rule the fast paths out."""
    return os.environ.get("PTMPROC_FULL_REPLAY", "").strip() not in ("", "0")


def _module(plugin) -> str:
    return plugin.__name__ if isinstance(plugin, types.ModuleType) else type(plugin).__module__


def _compile(calls: list, argnames: tuple, firstresult: bool):
    """One function that makes `calls` ([(function, argument positions)], as `_plan` gives
    them) in order, taking the hook's arguments by position or by name: the direct call costs
    one Python call instead of a loop that unpacks arguments per implementation. The source is
    built from the hook spec's argument names (identifiers, checked) and numbered references to
    the functions, nothing else."""
    if not all(name.isidentifier() for name in argnames):
        return None
    lines = [f"def direct({', '.join(argnames)}):"]
    scope: dict = {}
    for i, (function, positions) in enumerate(calls):
        scope[f"f{i}"] = function
        names = argnames if positions is None else [argnames[p] for p in positions]
        call = f"f{i}({', '.join(names)})"
        if firstresult:
            lines += [f"    r = {call}", "    if r is not None:", "        return r"]
        else:
            lines.append(f"    {call}")
    lines.append("    return None")
    exec("\n".join(lines), scope)  # noqa: S102 - see the docstring: names and f<i> only
    return scope["direct"]


class DirectHook:
    """One hook of one hook relay (`config.hook`, or a directory's `ihook` that leaves out
    conftests of other directories). Called with the hook's arguments by position, in
    `argnames` order."""

    __slots__ = ("caller", "base", "pm", "argnames", "names", "dispatch", "firstresult", "snapshot", "tracer",
                 "calls", "direct", "dispatched", "fast", "known", "memo", "reused")

    def __init__(self, pm, caller, argnames: tuple, dispatch=None) -> None:
        self.pm = pm
        self.caller = caller
        # A directory's hook caller is a subset of the relay's: its implementations change
        # when the relay's do.
        self.base = getattr(caller, "_orig", caller)
        self.argnames = argnames
        self.names = frozenset(argnames)
        self.dispatch = dispatch or caller  # the call through pluggy
        spec = getattr(caller, "spec", None)
        self.firstresult = bool(spec and spec.opts.get("firstresult"))
        self.snapshot = None
        self.tracer = None
        self.calls = None
        # The plan compiled (_compile), or None: dispatch through pluggy.
        self.fast = None
        # How many calls went which way (the run's statistics, tests).
        self.direct = self.dispatched = 0
        # Results given again (pytest_report_teststatus, see the module doc): `known` is the
        # plain test's three reports while they are replayed (set by replay._log_test), `memo`
        # {phase index: result} for the current plan.
        self.known = None
        self.memo: dict = {}
        self.reused = 0

    def _plan(self):
        """[(function, argument positions: None for all in order, () for none)] in call order,
        or None: dispatch through pluggy."""
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

    def _replan(self) -> None:
        try:
            impls = self.base._hookimpls
            self.tracer = self.pm._inner_hookexec
        except AttributeError:  # a pluggy without these internals: always dispatch
            self.snapshot, self.calls, self.fast = None, None, None
            return
        self.snapshot = list(impls)
        self.memo = {}
        self.calls = self._plan()
        self.fast = None if self.calls is None else _compile(self.calls, self.argnames, self.firstresult)

    def current(self):
        """The compiled direct call for the hook's implementations as they are now, or None
        (dispatch through pluggy). Checked on every call: a plugin registered in the middle of
        a run, or a tracer installed, is seen at once."""
        if self.snapshot is None or self.base._hookimpls != self.snapshot or self.pm._inner_hookexec is not self.tracer:
            self._replan()
        return self.fast

    def __call__(self, *args):
        """The first result for a firstresult hook; otherwise None (the replay ignores results)."""
        fast = self.current()
        if fast is None:
            self.dispatched += 1
            res = self.dispatch(**dict(zip(self.argnames, args)))
            return res if self.firstresult else None
        self.direct += 1
        return fast(*args)


class _DirectCaller(pluggy.HookCaller):
    """A relay's hook caller whose calls go through its DirectHook (`make_direct` gives each
    such caller a subclass of this one whose `_direct` is its DirectHook)."""

    __slots__ = ()
    _direct: DirectHook

    def __call__(self, **kwargs):
        hook = self._direct
        known = hook.known
        if known is not None:
            # One of a plain test's reports, whose replay checked this hook's plan for the test.
            report = kwargs.get(hook.argnames[0])
            key = 0 if report is known[0] else 1 if report is known[1] else 2 if report is known[2] else -1
            if key >= 0:
                hook.direct += 1
                res = hook.memo.get(key)
                if res is None:
                    res = hook.fast(**kwargs)
                    if type(res) is tuple:
                        hook.memo[key] = res
                else:
                    hook.reused += 1
                return res
        fast = hook.current() if kwargs.keys() == hook.names else None
        if fast is None:  # pluggy's dispatch, and its own handling of odd calls
            hook.dispatched += 1
            return pluggy.HookCaller.__call__(self, **kwargs)
        hook.direct += 1
        return fast(**kwargs)


_MADE_DIRECT: dict = {}


def make_direct(pm, name: str):
    """Makes `pm.hook.<name>` (called by pytest's own plugins, e.g. the terminal reporter's
    pytest_report_teststatus per report) follow the same rule as the replay hooks, for every
    caller in this process. Returns its DirectHook, or None if that cannot be done here."""
    caller = getattr(pm.hook, name, None)
    if caller is None:
        return None
    if isinstance(caller, _DirectCaller):
        return caller._direct
    if type(caller) is not pluggy.HookCaller or caller.spec is None or not caller.spec.opts.get("firstresult"):
        return None  # (a hook whose callers get every result would need them collected)
    hook = DirectHook(pm, caller, tuple(caller.spec.argnames), functools.partial(pluggy.HookCaller.__call__, caller))
    try:
        caller.__class__ = type("_DirectCaller", (_DirectCaller,), {"__slots__": (), "_direct": hook})
    except TypeError:  # a pluggy whose HookCaller cannot take it
        return None
    _MADE_DIRECT[id(caller)] = hook
    return hook


def restore(pm) -> None:
    """The session is over: `pm`'s hook callers made direct are plain HookCallers again, and
    this module keeps no reference to them (nor, through them, to the session)."""
    for key, hook in list(_MADE_DIRECT.items()):
        if hook.pm is pm:
            hook.caller.__class__ = pluggy.HookCaller
            del _MADE_DIRECT[key]


class ReplayHooks:
    """The three hooks a replayed test fires, for each test file's directory (whose `ihook`
    leaves out the conftests of other directories, as pytest's own calls do)."""

    def __init__(self, config) -> None:
        self.pm = config.pluginmanager
        self._by_path: dict = {}
        # The terminal reporter asks this for each report it is given.
        self.teststatus = make_direct(self.pm, "pytest_report_teststatus")

    def of(self, item) -> tuple:
        """(logstart, logreport, logfinish) for `item`."""
        conftests = len(getattr(self.pm, "_conftest_plugins", ()))
        entry = self._by_path.get(item.path)
        if entry is None or entry[0] != conftests:
            ihook = item.ihook
            entry = self._by_path[item.path] = (conftests, (
                DirectHook(self.pm, ihook.pytest_runtest_logstart, ("nodeid", "location")),
                DirectHook(self.pm, ihook.pytest_runtest_logreport, ("report",)),
                DirectHook(self.pm, ihook.pytest_runtest_logfinish, ("nodeid", "location")),
            ))
        return entry[1]

    def plain_calls(self, item):
        """(logstart, logreport, logfinish) direct calls for a plain passed test of `item`'s
        directory, counted as made, if these three hooks and pytest_report_teststatus are all
        direct now; else None (call each hook through its DirectHook)."""
        start, report, finish = self.of(item)
        status = self.teststatus
        if status is None:
            return None
        fs, fr, ff = start.current(), report.current(), finish.current()
        if fs is None or fr is None or ff is None or status.current() is None:
            return None
        start.direct += 1
        report.direct += 3
        finish.direct += 1
        return fs, fr, ff

    def dispatches(self) -> int:
        """How many of these hooks' calls went through pluggy so far (gc_freeze: a third-party
        implementation may have run)."""
        n = self.teststatus.dispatched if self.teststatus else 0
        for entry in self._by_path.values():
            for hook in entry[1]:
                n += hook.dispatched
        return n

    def counts(self) -> dict:
        """{hook name: [direct calls, calls through pluggy]} so far."""
        out: dict = {}
        hooks = [hook for entry in self._by_path.values() for hook in entry[1]]
        for hook in hooks + ([self.teststatus] if self.teststatus else []):
            c = out.setdefault(hook.caller.name, [0, 0])
            c[0] += hook.direct
            c[1] += hook.dispatched
        return out
