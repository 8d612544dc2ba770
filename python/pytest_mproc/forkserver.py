"""The fork server: a process forked from the main right after collection, while the main is
still single-threaded and untouched by reporting. It forks every worker (the first N at once,
replacements on request), reaps them, and tells the main through the results ring when one
ends. Workers forked from it start pulling tests at once: no interpreter start-up, no imports,
no re-collection."""

from __future__ import annotations

import os
import select
import signal
import sys

from . import _core, messages, output_prefix, worker, xdist_protocol
from .child import Child, fork
from .verbose import log


def first_wids(workers: int) -> list[str]:
    """The ids of the workers the server forks at once."""
    return [f"gw{i}" for i in range(workers)]


class ForkServer(Child):
    """The main's handle on the fork server process."""

    def __init__(self, pid: int, cmd_fd: int, workers: int) -> None:
        super().__init__(pid)
        self._cmd = cmd_fd
        self._next_wid = workers
        # Every worker this server was asked for (the first ones and replacements).
        self.wids = first_wids(workers)
        # Workers that die outside any test, again and again, with no progress in between (a
        # plugin or conftest that breaks in a forked process): give up rather than fork
        # replacements forever.
        self._fruitless = 0
        self._fruitless_limit = 2 * workers + 2

    def replace(self) -> str:
        """Forks a replacement worker under a fresh id; returns the id."""
        wid = f"gw{self._next_wid}"
        self._next_wid += 1
        self.wids.append(wid)
        os.write(self._cmd, f"S {wid}\n".encode())
        return wid

    def progress(self) -> None:
        """Tests are getting done: earlier deaths outside tests were no crash loop."""
        self._fruitless = 0

    def crash_loop(self) -> bool:
        """Counts a worker death outside any test; True once there were too many in a row."""
        self._fruitless += 1
        return self._fruitless > self._fruitless_limit

    def shutdown(self) -> None:
        """Closing the command pipe tells the server to end; it exits once its workers have.
        (In another process forked from the main later, closing its inherited copy of the pipe
        is what lets the server see the pipe close when the main closes it.)"""
        if self._cmd >= 0:
            os.close(self._cmd)
            self._cmd = -1

    def kill(self, group: bool = True) -> None:
        """Ends the server and every worker at once (Ctrl-C, fatal errors)."""
        self.shutdown()
        super().kill(group=group)


def start(session, workers: int, tasks: _core.Ring, results: _core.Ring, store: _core.Store,
          rundir: str, testrunuid: str, control: _core.Ring | None = None) -> ForkServer:
    """`control` receives worker life-cycle messages (default: the results ring)."""
    control = control if control is not None else results
    r, w = os.pipe()

    def serve() -> int:
        os.close(w)
        return _serve(session, workers, r, tasks, results, store, rundir, testrunuid, control)

    pid = fork(serve, "fork server").pid
    os.close(r)
    # Own process group: a terminal Ctrl-C reaches only the main, which then ends the group.
    try:
        os.setpgid(pid, pid)
    except OSError:
        pass
    return ForkServer(pid, w, workers)


def _serve(session, workers, cmd_fd, tasks, results, store, rundir, testrunuid, control) -> int:
    main_pid = os.getppid()
    try:
        os.setpgid(0, 0)
    except OSError:
        pass
    if _core.set_parent_death_signal(signal.SIGKILL) != main_pid:
        return 3
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    me = os.getpid()
    children: dict[int, tuple[str, int]] = {}  # pidfd -> (wid, pid)
    # Under -s every line a worker prints is prefixed with its name (output_prefix.py).
    prefix = session.config.getoption("capture", "fd") == "no"
    node = os.environ.get("PTMPROC_NODE_NAME")

    def spawn(wid: str) -> None:
        # xdist's pytest_configure_node runs here, in this copy of the main, for every worker.
        workerinput = xdist_protocol.workerinput(session.config, wid, workers, testrunuid)
        streams = output_prefix.start(f"{node}/{wid}" if node else wid) if prefix else None
        pid = os.fork()
        if pid == 0:
            code = 70
            try:
                if streams is not None:
                    sys.stdout.flush()
                    sys.stderr.flush()
                    os.dup2(streams[0], 1)
                    os.dup2(streams[1], 2)
                    os.close(streams[0])
                    os.close(streams[1])
                os.close(cmd_fd)
                for fd in children:
                    os.close(fd)
                code = worker.run(session, wid, workerinput, tasks, results, store, rundir, me, control)
            except BaseException as e:  # noqa: BLE001
                _internal_error(control, wid, e)
            finally:
                try:
                    sys.stdout.flush()
                    sys.stderr.flush()
                finally:
                    os._exit(code)
        if streams is not None:
            os.close(streams[0])
            os.close(streams[1])
        children[os.pidfd_open(pid)] = (wid, pid)
        log(f"forked worker {wid} as pid {pid}")

    for wid in first_wids(workers):
        spawn(wid)
    buf = b""
    open_cmd = True
    while children or open_cmd:
        fds = list(children) + ([cmd_fd] if open_cmd else [])
        ready, _, _ = select.select(fds, [], [])
        for fd in ready:
            if fd == cmd_fd:
                data = os.read(cmd_fd, 4096)
                if not data:
                    open_cmd = False
                    continue
                buf += data
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    op, _, arg = line.decode().partition(" ")
                    if op == "S":
                        spawn(arg)
            else:
                wid, pid = children.pop(fd)
                os.close(fd)
                _, status = os.waitpid(pid, 0)
                control.push(messages.encode((messages.DIED, wid, pid, status)))
    return 0


def _internal_error(results: _core.Ring, wid: str, e: BaseException) -> None:
    import traceback

    text = "".join(traceback.format_exception(type(e), e, e.__traceback__))
    try:
        results.push(messages.encode((messages.INTERNAL, wid, text)), timeout=5)
    except Exception:
        sys.stderr.write(text)
