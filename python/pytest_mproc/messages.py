"""What travels through the node rings.

Tasks ring (main -> workers): a unit of work = little-endian u32 test indices into
`session.items` (the list every process shares because workers are forked after collection).

Results ring (workers and fork server -> main): pickled tuples, first element the kind:
  ("R", wid, index, [serialized reports], [warnings], location[, node])
                                                      a test finished (node: the worker node's
                                                      name, on worker nodes)
  ("P", wid, index, location, keywords, times[, node])
                                                      a test finished that passed with nothing
                                                      else to show (plain_reports.py): its
                                                      keywords' names and its phases' (duration,
                                                      start, stop) x 3
  ("U", wid, pid)                                     a worker is up
  ("D", wid, pid, wait_status)                        a worker process ended (from the fork server)
  ("I", wid, text)                                    an internal error in a worker
  ("F", wid, cpu_seconds, max_rss_kb, pss_kb)         a worker finished its loop (statistics)
  ("O", wid, workerinput, workeroutput)               a worker's xdist-protocol output, at its end
  ("H", text)                                         a hang report made on a worker node
  ("K", wid, index, [serialized reports], repr)       a test raised KeyboardInterrupt it did not
                                                      catch (repr: the pickled ExceptionRepr)
  ("K", wid, index, [reports], None, (reason, code))  a test called pytest.exit(reason, code)

Multi-host, the main's results ring also carries the coordinator's events: EVENT_TAG + JSON
(see `is_event`), and worker nodes' ("W", wid, pid, status, running, stderr_tail, node).
"""

from __future__ import annotations

import pickle
import struct
import sys
from array import array

from . import _core

RESULT = "R"
PASSED = "P"
RESULTS = (RESULT, PASSED)
UP = "U"
DIED = "D"
INTERNAL = "I"
FINISHED = "F"
INTERRUPTED = "K"
WORKER_OUTPUT = "O"
HANG_REPORT = "H"


def is_event(data: bytes) -> bool:
    """Is this results-ring item a coordinator event (not a pickle, which starts with 0x80)?"""
    return data[0] == _core.EVENT_TAG


_BIG_ENDIAN = sys.byteorder == "big"


def encode_unit(indices: list[int]) -> bytes:
    if len(indices) == 1:
        return struct.pack("<I", indices[0])
    a = array("I", indices)
    if _BIG_ENDIAN:
        a.byteswap()
    return a.tobytes()


def decode_unit(data: bytes) -> list[int]:
    if len(data) == 4:
        return [struct.unpack("<I", data)[0]]
    a = array("I")
    a.frombytes(data)
    if _BIG_ENDIAN:
        a.byteswap()
    return a.tolist()


def encode(msg: tuple) -> bytes:
    return pickle.dumps(msg, protocol=pickle.HIGHEST_PROTOCOL)


def decode(data: bytes) -> tuple:
    return pickle.loads(data)
