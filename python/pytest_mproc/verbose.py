"""PTMPROC_VERBOSE=1: one line on stderr for each thing the plugin does."""

from __future__ import annotations

import os
import time

# PTMPROC_VERBSE: the spelling the original documentation uses.
_VALUE = os.environ.get("PTMPROC_VERBOSE", os.environ.get("PTMPROC_VERBSE", "0"))
ENABLED = _VALUE.strip().lower() not in ("", "0", "false", "no", "off")

# Workers point fd 2 at a per-worker file; verbose lines keep going to the user's stderr.
_fd = 2


def keep_terminal_stderr() -> None:
    """Call before fd 2 is redirected: verbose output keeps the original stderr."""
    global _fd
    if ENABLED and _fd == 2:
        _fd = os.dup(2)


def log(msg: str) -> None:
    if ENABLED:
        os.write(_fd, f"[pytest-mproc {os.getpid()} {time.monotonic():.3f}] {msg}\n".encode())
