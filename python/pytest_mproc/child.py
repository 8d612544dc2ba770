"""A handle on a child process forked by this one: liveness without blocking, reaping once."""

from __future__ import annotations

import os
import signal


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

    def kill(self, group: bool = False) -> None:
        """SIGKILL (its whole process group with `group`) and reap."""
        if self.exit_status is None:
            try:
                (os.killpg if group else os.kill)(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.wait()
