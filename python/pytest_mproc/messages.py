"""What travels through the node rings.

Tasks ring (main -> workers): a unit of work = little-endian u32 test indices into
`session.items` (the list every process shares because workers are forked after collection).

Results ring (workers and fork server -> main): pickled tuples, first element the kind:
  ("R", wid, index, [serialized reports], [warnings], location)  a test finished
  ("U", wid, pid)                                     a worker is up
  ("D", wid, pid, wait_status)                        a worker process ended (from the fork server)
  ("I", wid, text)                                    an internal error in a worker
  ("F", wid, cpu_seconds, max_rss_kb, pss_kb)         a worker finished its loop (statistics)
"""

from __future__ import annotations

import pickle
import struct
from array import array

RESULT = "R"
UP = "U"
DIED = "D"
INTERNAL = "I"
FINISHED = "F"


def encode_unit(indices: list[int]) -> bytes:
    if len(indices) == 1:
        return struct.pack("<I", indices[0])
    return array("I", indices).tobytes()


def decode_unit(data: bytes) -> list[int]:
    if len(data) == 4:
        return [struct.unpack("<I", data)[0]]
    a = array("I")
    a.frombytes(data)
    return a.tolist()


def encode(msg: tuple) -> bytes:
    return pickle.dumps(msg, protocol=pickle.HIGHEST_PROTOCOL)


def decode(data: bytes) -> tuple:
    return pickle.loads(data)
