"""A test sees the process a serial run gives it: signal dispositions and mask, cwd, umask,
rlimits, environment (plus only the documented worker variables), argv, recursion limit, the
main thread, stdin under capture, and no inherited descriptor of ours. Compared against a serial
run of the same test, on a single host and on a worker node. Also: what tests do with signals
(Ctrl-C handling, alarms) behaves as in a serial run."""

from __future__ import annotations

import json
import re

import pytest

from cluster import Cluster

SNAPSHOT = r'''
import json, os, resource, signal, sys, threading

def _handler_name(h):
    if h is None:
        return "not-from-python"
    if h in (signal.SIG_DFL, signal.SIG_IGN):
        return signal.Handlers(h).name
    return getattr(h, "__qualname__", repr(h))

def _fd_kind(fd):
    try:
        target = os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return None
    for kind in ("memfd:", "socket:", "anon_inode:", "pipe:"):
        if target.startswith(kind):
            return kind.rstrip(":")
    return "file"

def test_snapshot():
    sigs = {}
    for s in sorted(signal.valid_signals()):
        if s in (signal.SIGKILL, signal.SIGSTOP):
            continue
        try:
            sigs[signal.Signals(s).name if s in signal.Signals._value2member_map_ else str(s)] = _handler_name(signal.getsignal(s))
        except (OSError, ValueError):
            pass
    umask = os.umask(0); os.umask(umask)
    fds = sorted(int(f) for f in os.listdir("/proc/self/fd"))
    documented = {"PTMPROC_WORKER", "PTMPROC_WORKER_ID", "PYTEST_XDIST_WORKER", "PYTEST_XDIST_WORKER_COUNT",
                  "PYTEST_XDIST_TESTRUNUID", "NODE_NAME", "MPROC_CLUSTER_TAG", "PTMPROC_AUTH_TOKEN",
                  "PYTHONUNBUFFERED", "PTMPROC_VERBOSE", "PTMPROC_NODE_NAME"}
    snap = {
        "signals": sigs,
        "mask": sorted(int(s) for s in signal.pthread_sigmask(signal.SIG_BLOCK, [])),
        "cwd": os.getcwd(),
        "umask": umask,
        "rlimits": {n: resource.getrlimit(getattr(resource, n)) for n in dir(resource) if n.startswith("RLIMIT_")},
        "env": sorted(k for k in os.environ if k not in documented),
        "argv": [a for a in sys.argv[1:] if not a.startswith("--basetemp")],
        "recursionlimit": sys.getrecursionlimit(),
        "main_thread": threading.current_thread() is threading.main_thread(),
        "stdin": type(sys.stdin).__name__,
        "fd_kinds": sorted(k for k in (_fd_kind(f) for f in fds) if k is not None),
    }
    with open(os.environ["SNAPSHOT_OUT"], "w") as f:
        json.dump(snap, f, indent=1, sort_keys=True)
'''


def snapshot(pytester, monkeypatch, name: str, *args: str) -> dict:
    out = pytester.path / f"{name}.json"
    monkeypatch.setenv("SNAPSHOT_OUT", str(out))
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "test_snapshot.py", *args, timeout=120)
    assert result.ret == 0, result.stdout.str()
    return json.loads(out.read_text())


def differences(serial: dict, other: dict) -> list[str]:
    diffs = []
    for key in serial:
        if key == "signals":
            for sig, handler in serial[key].items():
                if other[key].get(sig) != handler:
                    diffs.append(f"{sig}: serial {handler}, here {other[key].get(sig)}")
        elif serial[key] != other[key]:
            diffs.append(f"{key}: serial {serial[key]!r}, here {other[key]!r}")
    return diffs


def test_a_worker_sees_the_process_a_serial_run_gives(pytester, monkeypatch):
    pytester.makepyfile(test_snapshot=SNAPSHOT)
    serial = snapshot(pytester, monkeypatch, "serial")
    parallel = snapshot(pytester, monkeypatch, "cores", "--cores", "2")
    parallel["argv"].remove("--cores"), parallel["argv"].remove("2")
    assert serial["signals"]["SIGINT"] == "default_int_handler"
    assert serial["signals"]["SIGPIPE"] == "SIG_IGN"
    assert differences(serial, parallel) == []


def test_a_worker_node_sees_the_process_a_serial_run_gives(pytester):
    pytester.makepyfile(test_snapshot=SNAPSHOT)
    cluster = Cluster(pytester.path, "ab" * 16)
    try:
        # The serial run is started exactly as the node is (same stdin, stdout, environment).
        serial_out = pytester.path / "serial.json"
        serial = cluster.spawn(["test_snapshot.py"], "serial", env={"SNAPSHOT_OUT": str(serial_out)})
        assert serial.wait() == 0, serial.text()
        out = pytester.path / "node.json"
        main = cluster.main("test_snapshot.py")
        # (Not started with `ready`: that turns on PTMPROC_VERBOSE, whose log keeps a descriptor.)
        node = cluster.node("a", "test_snapshot.py", cores=1, env={"SNAPSHOT_OUT": str(out)})
        assert main.wait() == 0, main.text()
        assert node.wait() == 0, node.text()
        on_node = json.loads(out.read_text())
        serial = json.loads(serial_out.read_text())
    finally:
        cluster.close()
    # The node's command line is `--as-worker ...` on top of the serial one.
    serial.pop("argv"), on_node.pop("argv")
    assert differences(serial, on_node) == []


def test_a_test_can_catch_its_own_ctrl_c(run, pytester):
    pytester.makepyfile(
        """
        import os, signal, pytest
        def test_ctrl_c_raises():
            with pytest.raises(KeyboardInterrupt):
                os.kill(os.getpid(), signal.SIGINT)
        def test_handler_is_pythons():
            assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
        """
    )
    result = run("--cores", "2")
    result.assert_outcomes(passed=2)


def test_alarm_and_timer_handlers_work_in_workers(run, pytester):
    pytester.makepyfile(
        """
        import signal, time
        def test_setitimer():
            fired = []
            signal.signal(signal.SIGALRM, lambda *a: fired.append(1))
            signal.setitimer(signal.ITIMER_REAL, 0.01)
            deadline = time.monotonic() + 10
            while not fired and time.monotonic() < deadline:
                time.sleep(0.001)  # the timer interrupts this; the loop is bounded
            assert fired
        """
    )
    run("--cores", "2").assert_outcomes(passed=1)


def _interrupt_lines(text: str) -> list[str]:
    """The summary lines a KeyboardInterrupt produces (separator, location, hint)."""
    keep = []
    for line in text.splitlines():
        if "KeyboardInterrupt" in line or "--full-trace" in line:
            keep.append(re.sub(r"!{3,}", "!!!", line))
    return keep


def test_an_uncaught_ctrl_c_in_a_test_interrupts_the_run_as_serially(run, pytester):
    pytester.makepyfile(
        """
        import os, signal
        def test_a():
            pass
        def test_interrupts():
            os.kill(os.getpid(), signal.SIGINT)
        """
    )
    serial = run()
    parallel = run("--cores", "2")
    assert serial.ret == parallel.ret == pytest.ExitCode.INTERRUPTED
    lines = _interrupt_lines(parallel.stdout.str())
    assert lines == _interrupt_lines(serial.stdout.str())
    assert any("test_an_uncaught_ctrl_c_in_a_test_interrupts_the_run_as_serially.py:5: KeyboardInterrupt" in l
               for l in lines), lines
    assert "crashed" not in parallel.stdout.str()


@pytest.mark.parametrize("returncode", [None, 3])
def test_pytest_exit_in_a_test_ends_the_run_as_serially(run, pytester, returncode):
    arg = "" if returncode is None else f", returncode={returncode}"
    pytester.makepyfile(
        f"""
        import pytest
        def test_a():
            pass
        def test_exits():
            pytest.exit("enough for today"{arg})
        """
    )
    serial = run()
    parallel = run("--cores", "2")
    expected = pytest.ExitCode.INTERRUPTED if returncode is None else returncode
    assert serial.ret == parallel.ret == expected
    banner = [line for line in serial.outlines if "Exit: enough for today" in line]
    assert banner and [line for line in parallel.outlines if "Exit: enough for today" in line] == banner
    assert "internal error" not in parallel.stdout.str() and "Traceback" not in parallel.stdout.str()
