"""Ctrl-C: partial summary, exit code 2, and within 5 s no process of the run and no shm segment
left behind."""

import os
import signal
import subprocess
import sys
import time
import uuid

import pytest


def _processes_with(token: str) -> list[int]:
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                if token.encode() in f.read():
                    found.append(int(pid))
        except OSError:
            pass
    return found


def _wait_for(cond, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.01)
    return cond()


def test_ctrl_c_stops_everything(pytester):
    marks = pytester.path / "started"
    marks.mkdir()
    pytester.makepyfile(
        f"""
        import os, time, pytest
        def test_quick(): pass
        @pytest.mark.parametrize("n", range(4))
        def test_hang(n):
            open(os.path.join({str(marks)!r}, str(os.getpid())), "w").close()
            time.sleep(120)
        """
    )
    token = f"PTM_TEST_TOKEN_{uuid.uuid4().hex}"
    shm_before = set(os.listdir("/dev/shm"))
    env = dict(os.environ, **{token: "1"})
    proc = subprocess.Popen(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--cores", "2"],
        cwd=pytester.path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        # Both workers are inside a hanging test.
        assert _wait_for(lambda: len(os.listdir(marks)) >= 2, 60), "workers never started"
        # What a terminal does: SIGINT to the foreground process group.
        os.killpg(proc.pid, signal.SIGINT)
        out, _ = proc.communicate(timeout=5)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    text = out.decode()
    assert proc.returncode == pytest.ExitCode.INTERRUPTED, text
    assert "KeyboardInterrupt" in text
    assert "1 passed" in text  # the partial summary
    assert _wait_for(lambda: not _processes_with(token), 5), _processes_with(token)
    assert set(os.listdir("/dev/shm")) <= shm_before


def test_ctrl_c_while_a_result_is_handled_is_raised_after_it():
    # The main's guard: a result popped from the ring is replayed completely before Ctrl-C
    # takes effect, so the partial summary never loses it.
    from pytest_mproc.interrupt_guard import InterruptGuard

    guard = InterruptGuard()
    guard.install()
    try:
        handled = []
        with pytest.raises(KeyboardInterrupt):
            with guard.handling():
                os.kill(os.getpid(), signal.SIGINT)
                handled.append("the rest of the message")
        assert handled == ["the rest of the message"]
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(5)  # interrupted at once outside handling (the signal arrives first)
    finally:
        guard.uninstall()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
