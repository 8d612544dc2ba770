"""Where the multi-host run's shared token comes from.

Both ends of every connection prove they hold the same token (HMAC challenge-response, in
Rust) before anything else is exchanged. The token is, in order of preference:

1. the bytes returned by the callback given to `pytest_mproc.set_user_defined_auth_token`,
2. the hex in the environment variable PTMPROC_AUTH_TOKEN,
3. on the main only: a fresh random token, printed for the worker nodes to pass on.
"""

from __future__ import annotations

import os
from typing import Callable

from . import _core

ENV = "PTMPROC_AUTH_TOKEN"

_callback: Callable[[], bytes] | None = None


def set_user_defined_auth_token(callback: Callable[[], bytes]) -> None:
    """Registers `callback() -> bytes` as the source of the run's auth token (call it at import
    time of your conftest.py, on every node)."""
    global _callback
    if not callable(callback):
        raise TypeError("set_user_defined_auth_token needs a callable returning bytes")
    _callback = callback


class TokenError(ValueError):
    pass


def token(role: str) -> tuple[bytes, bool]:
    """(token, generated): `generated` is True when the main made up a random one."""
    if _callback is not None:
        value = _callback()
        if isinstance(value, str):
            value = value.encode()
        if not isinstance(value, (bytes, bytearray)) or not value:
            raise TokenError(f"the auth token callback returned {type(value).__name__}, expected non-empty bytes")
        return bytes(value), False
    env = os.environ.get(ENV)
    if env:
        try:
            return _core.token_from_hex(env), False
        except ValueError as e:
            raise TokenError(f"{ENV}: {e}") from None
    if role == "main":
        return _core.random_token(), True
    raise TokenError(
        f"no auth token: set {ENV} to the hex token the main printed, or call "
        f"pytest_mproc.set_user_defined_auth_token(callback) in conftest.py"
    )
