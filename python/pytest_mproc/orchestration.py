"""A standalone coordinator: the run's test queue served by its own process, for setups where
the main (say, a laptop) cannot accept connections but can connect out, like the worker nodes.

    import pytest_mproc
    pytest_mproc.orchestration.main("0.0.0.0", 7777, auth_key)

then, anywhere that can reach it:

    pytest --as-main coordinator.host:7777 ...            # collects, reports
    pytest --as-worker coordinator.host:7777 --cores 8    # on each worker node

`main` returns once the main has connected, finished its run and left.
"""

from __future__ import annotations

from . import _core


def main(host: str, port: int, auth_key: bytes) -> None:
    """Serves one run's queue on host:port; everyone must hold `auth_key` (bytes, or its hex)."""
    if isinstance(auth_key, str):
        auth_key = _core.token_from_hex(auth_key)
    if not isinstance(auth_key, (bytes, bytearray)) or not auth_key:
        raise ValueError("orchestration.main: auth_key must be non-empty bytes")
    if not isinstance(port, int) or not 0 < port < 65536:
        raise ValueError(f"orchestration.main: invalid port {port!r}")
    _core.serve_orchestration(host, port, bytes(auth_key))


if __name__ == "__main__":  # python -m pytest_mproc.orchestration HOST PORT (token in PTMPROC_AUTH_TOKEN)
    import os
    import sys

    main(sys.argv[1], int(sys.argv[2]), _core.token_from_hex(os.environ["PTMPROC_AUTH_TOKEN"]))
