"""A handle on a child process forked by this one: liveness without blocking, reaping once."""

from __future__ import annotations

import os
import select
import signal
import sys
import time
from typing import Callable


class Child:
    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.exit_status: int | None = None

    def alive(self) -> bool:
        if self.exit_status is not None:
            return False
        pid, status = os.waitpid(self.pid, os.WNOHANG)
        if pid == 0:
            return True
        self.exit_status = status
        return False

    def wait(self) -> int:
        if self.exit_status is None:
            _, self.exit_status = os.waitpid(self.pid, 0)
        return self.exit_status

    def reap(self, timeout: float, group: bool = False) -> int:
        """Waits up to `timeout` seconds for the exit, then kills (see `kill`); the exit status."""
        if self.exit_status is None:
            try:
                fd = os.pidfd_open(self.pid)
            except OSError:  # no pidfd here: look every 5 ms
                deadline = time.monotonic() + timeout
                while self.alive() and time.monotonic() < deadline:
                    time.sleep(0.005)
            else:
                try:
                    select.select([fd], [], [], timeout)
                finally:
                    os.close(fd)
            if self.alive():
                self.kill(group=group)
        return self.wait()

    def kill(self, group: bool = False) -> None:
        """SIGKILL (its whole process group with `group`) and reap."""
        if self.exit_status is None:
            try:
                (os.killpg if group else os.kill)(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.wait()


def fork(body: Callable[[], int], what: str) -> Child:
    """Forks a child that runs `body()` and exits with its return code; it never returns into
    the caller's code (pytest), whatever `body` raises."""
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        code = 70
        try:
            code = body()
        except BaseException as e:  # noqa: BLE001 - the child must end here
            try:
                sys.stderr.write(f"pytest-mproc {what}: {e}\n" if isinstance(e, Exception) and str(e)
                                 else f"pytest-mproc {what} failed: {e!r}\n")
                sys.stderr.flush()
            except Exception:
                pass
        finally:
            os._exit(code)
    return Child(pid)
