"""pytest_mproc._core across forked processes: push/pop, blobs, leases, heal, Ctrl-C."""

import os
import signal
import struct

import pytest

from pytest_mproc import _core


def _wait(pid):
    _, status = os.waitpid(pid, 0)
    return status


def test_push_pop_across_fork_exactly_once():
    ring = _core.Ring.create(capacity=64)
    n, children = 5000, 3
    out_r, out_w = os.pipe()
    pids = []
    for _ in range(children):
        pid = os.fork()
        if pid == 0:
            os.close(out_r)
            got = []
            try:
                while True:
                    got.append(struct.unpack("<I", ring.pop())[0])
            except _core.RingClosed:
                pass
            data = struct.pack(f"<{len(got)}I", *got)
            os.write(out_w, struct.pack("<I", len(data)) + data)
            os._exit(0)
        pids.append(pid)
    os.close(out_w)
    for i in range(n):
        ring.push(struct.pack("<I", i))
    ring.close()
    with os.fdopen(out_r, "rb") as f:
        blob = f.read()
    for pid in pids:
        assert os.waitstatus_to_exitcode(_wait(pid)) == 0
    seen = []
    while blob:
        (size,) = struct.unpack("<I", blob[:4])
        seen += struct.unpack(f"<{size // 4}I", blob[4 : 4 + size])
        blob = blob[4 + size :]
    assert sorted(seen) == list(range(n))


def test_large_message_through_arena_across_processes():
    ring = _core.Ring.create(capacity=8, arena_bytes=32 << 20)
    payload = os.urandom(5 << 20)
    pid = os.fork()
    if pid == 0:
        ring.push(payload)
        os._exit(0)
    assert ring.pop(timeout=30) == payload
    assert os.waitstatus_to_exitcode(_wait(pid)) == 0
    assert ring.arena_used_chunks == 0


def test_attach_by_path_and_bad_segment(tmp_path):
    ring = _core.Ring.create(capacity=4)
    other = _core.Ring.attach(ring.path)
    ring.push(b"x")
    assert other.try_pop() == b"x"
    junk = tmp_path / "junk"
    junk.write_bytes(b"\0" * 8192)
    with pytest.raises(ValueError, match="bad magic"):
        _core.Ring.attach(str(junk))


def test_heal_hands_back_item_of_killed_worker():
    ring = _core.Ring.create(capacity=8)
    ring.push(b"test-17")
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        slot = ring.lease_claim()
        item = ring.pop_leased(slot)
        ring.lease_set(slot, 17)
        os.write(w, item)
        os.kill(os.getpid(), signal.SIGKILL)
    assert os.read(r, 100) == b"test-17"
    status = _wait(pid)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
    items, leases, tombstones, freed = ring.heal(pid)
    assert items == [b"test-17"]
    assert [(pid_, key) for _, pid_, key, _ in leases] == [(pid, 17)]
    assert ring.leases() == []


def test_blocking_pop_is_interruptible_by_signal():
    ring = _core.Ring.create(capacity=4)
    pid = os.fork()
    if pid == 0:
        try:
            ring.pop()  # blocks: nobody pushes
        except KeyboardInterrupt:
            os._exit(42)
        os._exit(1)
    # Wait until the child is really asleep in the futex, then interrupt it.
    while ring.pop_waiters == 0:
        os.sched_yield()
    os.kill(pid, signal.SIGINT)
    assert os.waitstatus_to_exitcode(_wait(pid)) == 42


def test_pop_timeout_and_closed():
    ring = _core.Ring.create(capacity=4)
    assert ring.pop(timeout=0.01) is None
    with pytest.raises(ValueError, match="timeout"):
        ring.pop(timeout=-1)
    ring.push(b"last")
    ring.close()
    assert ring.pop() == b"last"
    with pytest.raises(_core.RingClosed):
        ring.pop()
    with pytest.raises(_core.RingClosed):
        ring.push(b"more")


def test_out_of_range_slots_from_python_are_errors_not_crashes():
    # Each of these wrote outside the segment (and could segfault the interpreter) before
    # slot numbers were checked.
    ring = _core.Ring.create(capacity=4, slot_size=64, leases=2)
    for call in (lambda: ring.ack(10**6), lambda: ring.lease_set(2, 1), lambda: ring.lease_release(99),
                 lambda: ring.pop_leased(5, timeout=0)):
        with pytest.raises(ValueError, match=r"lease slot \d+ out of range 0\.\.2"):
            call()
    slot = ring.lease_claim()
    ring.lease_set(slot, 1)
    ring.ack(slot)
