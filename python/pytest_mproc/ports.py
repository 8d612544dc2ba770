"""Port choice for multi-host runs when `--as-main HOST` gives none.

Order: PTMPROC_GLOBALMGR_PORT (the port of the service that also serves global fixtures),
then the callback given to `pytest_mproc.set_user_defined_port_alloc`, then any free port.
PTMPROC_NODE_MGR_PORT is checked for validity only: a node shares its fixtures through shared
memory and needs no port of its own.
"""

from __future__ import annotations

import os
from typing import Callable

GLOBAL_ENV = "PTMPROC_GLOBALMGR_PORT"
NODE_ENV = "PTMPROC_NODE_MGR_PORT"

_callback: Callable[[], int] | None = None


def set_user_defined_port_alloc(callback: Callable[[], int]) -> None:
    """Registers `callback() -> int`, asked for a port when none is given."""
    global _callback
    if not callable(callback):
        raise TypeError("set_user_defined_port_alloc needs a callable returning an int")
    _callback = callback


def _env_port(name: str) -> int | None:
    value = os.environ.get(name)
    if not value:
        return None
    if not value.isdigit() or not 0 < int(value) < 65536:
        raise ValueError(f"{name}: invalid port {value!r} (use 1-65535)")
    return int(value)


def choose(port: int) -> int:
    """The port to listen on: `port` if given, else as described above (0: any free port)."""
    _env_port(NODE_ENV)
    if port:
        return port
    env = _env_port(GLOBAL_ENV)
    if env is not None:
        return env
    if _callback is not None:
        value = _callback()
        if not isinstance(value, int) or isinstance(value, bool) or not 0 < value < 65536:
            raise ValueError(f"the port allocation callback returned {value!r}, expected a port 1-65535")
        return value
    return 0
