"""Under `-s`, what a worker prints reaches the terminal line by line, each line prefixed with
the worker's name (`[gw3] ...`, `[node/gw3] ...` on a worker node), so interleaved output of
concurrent tests stays attributable.

The fork server gives each new worker two pipes (a pseudo-terminal each where the real stream is
a terminal, so a test still sees `isatty()` as in a serial run) for its stdout and stderr, and a
small copier process reads them and writes whole prefixed lines to the real streams. The copier
is not the worker: what a dying worker wrote last (a segfault's traceback) still arrives. It
ends when the worker and every copy of its ends are gone."""

from __future__ import annotations

import os
import select
import termios
import tty

# A line without its newline yet is written out after this long without more output.
PARTIAL_LINE_WAIT = 0.2


def start(label: str) -> tuple[int, int]:
    """Starts the copier for worker `label`; (stdout fd, stderr fd) for the worker to put on 1
    and 2. The caller closes both after forking the worker."""
    ends = [_channel(1), _channel(2)]
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            if os.fork() != 0:  # the copier is a grandchild: nobody has to reap it
                os._exit(0)
            keep = {1, 2} | {r for r, _ in ends}
            for _, w in ends:
                os.close(w)
            _close_all_but(keep)
            _copy({r: (target, f"[{label}] ".encode()) for (r, _), target in zip(ends, (1, 2))})
        except BaseException:  # noqa: BLE001 - nothing to report to; just end
            code = 1
        finally:
            os._exit(code)
    os.waitpid(pid, 0)
    for r, _ in ends:
        os.close(r)
    return ends[0][1], ends[1][1]


def _channel(target: int) -> tuple[int, int]:
    """(read end, write end): a raw pseudo-terminal when `target` is a terminal, else a pipe."""
    if os.isatty(target):
        master, slave = os.openpty()
        tty.setraw(slave, termios.TCSANOW)  # no "\n" -> "\r\n", no echo: bytes as written
        return master, slave
    return os.pipe()


def _close_all_but(keep: set[int]) -> None:
    try:
        fds = [int(n) for n in os.listdir("/proc/self/fd")]
    except OSError:
        fds = list(range(3, 1024))
    for fd in fds:
        if fd not in keep:
            try:
                os.close(fd)
            except OSError:
                pass


def _copy(sources: dict[int, tuple[int, bytes]]) -> None:
    pending = {fd: b"" for fd in sources}
    at_start = {fd: True for fd in sources}
    while sources:
        waiting = any(pending[fd] for fd in sources)
        ready, _, _ = select.select(list(sources), [], [], PARTIAL_LINE_WAIT if waiting else None)
        if not ready:
            for fd in sources:
                if pending[fd]:
                    _emit(fd, sources, pending, at_start, partial=True)
            continue
        for fd in ready:
            try:
                data = os.read(fd, 65536)
            except OSError:  # a pseudo-terminal whose other side is closed
                data = b""
            if not data:
                if pending[fd]:
                    _emit(fd, sources, pending, at_start, partial=True)
                os.close(fd)
                del sources[fd]
                continue
            pending[fd] += data
            _emit(fd, sources, pending, at_start, partial=False)


def _emit(fd: int, sources, pending, at_start, partial: bool) -> None:
    target, prefix = sources[fd]
    data = pending[fd]
    *lines, rest = data.split(b"\n")
    out = []
    for line in lines:
        out.append((prefix if at_start[fd] else b"") + line + b"\n")
        at_start[fd] = True
    if partial and rest:
        out.append((prefix if at_start[fd] else b"") + rest)
        at_start[fd] = False
        rest = b""
    pending[fd] = rest
    for chunk in out:  # one write per line: lines of concurrent workers do not mix
        view = memoryview(chunk)
        while view:
            try:
                n = os.write(target, view)
            except OSError:
                return
            view = view[n:]
