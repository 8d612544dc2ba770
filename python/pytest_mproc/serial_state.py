"""What a test can observe of its own process, as a serial run gives it.

The main records its signal dispositions and signal mask when the plugin is configured (before
the fork server, bridge or local node change anything for themselves); a worker restores them
before it runs a test, so a test sees Python's own SIGINT handler (`default_int_handler`), the
SIGPIPE disposition Python set, any handler a plugin or conftest installed, and the same mask.
Everything else a worker inherits unchanged by fork (cwd, umask, rlimits, environment,
`sys.argv`, recursion limit, the main thread). The documented differences are the worker
variables in the environment and the process itself (pid, parent, process group).
"""

from __future__ import annotations

import signal

_UNCATCHABLE = {signal.SIGKILL, signal.SIGSTOP}
_dispositions: dict[int, object] | None = None
_mask: set[int] | None = None


def record() -> None:
    """Called once in the main process at configure time."""
    global _dispositions, _mask
    if _dispositions is not None:
        return
    _dispositions = {}
    for sig in signal.valid_signals():
        if sig in _UNCATCHABLE:
            continue
        try:
            _dispositions[sig] = signal.getsignal(sig)
        except (OSError, ValueError):
            continue
    _mask = set(signal.pthread_sigmask(signal.SIG_BLOCK, []))


def restore() -> None:
    """Called in a worker before its first test: dispositions and mask as the main had them.
    A disposition installed outside Python (None, e.g. faulthandler's) is left as inherited."""
    if _dispositions is None:
        return
    for sig, handler in _dispositions.items():
        if handler is None:
            continue
        try:
            if signal.getsignal(sig) is not handler:
                signal.signal(sig, handler)
        except (OSError, ValueError, RuntimeError):
            continue
    if _mask is not None:
        signal.pthread_sigmask(signal.SIG_SETMASK, _mask)
