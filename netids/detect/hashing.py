"""64-bit hash keys of packet columns, shared by the tables that remember hosts, pairs and
sockets (:mod:`netids.detect.context`, :mod:`netids.detect.asked`), so one socket has one
key wherever it is looked up.

>>> import numpy as np
>>> a = socket_key(np.array([7], np.uint64), np.array([6]), np.array([50000]), np.array([80]))
>>> b = socket_key(np.array([7], np.uint64), np.array([6]), np.array([80]), np.array([50000]))
>>> bool(a[0] != b[0])
True
"""

from __future__ import annotations

import numpy as np

_M1, _M2, _M3 = np.uint64(0x9E3779B97F4A7C15), np.uint64(0xC2B2AE3D27D4EB4F), np.uint64(31)


def mix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """A 64-bit hash of two uint64 columns (wrapping arithmetic)."""
    with np.errstate(over="ignore"):
        h = (a * _M1) ^ (b + _M2 + (a << np.uint64(6)) + (a >> np.uint64(2)))
        return (h ^ (h >> _M3)) * _M2


def socket_key(pair: np.ndarray, proto: np.ndarray, sport: np.ndarray,
               dport: np.ndarray) -> np.ndarray:
    """Hash key of a directed socket from its host pair's key (or any one host's), protocol
    and ports."""
    proto = proto.astype(np.int64).astype(np.uint64)
    ports = (sport.astype(np.int64) & 0xFFFF).astype(np.uint64) << np.uint64(16)
    dports = (dport.astype(np.int64) & 0xFFFF).astype(np.uint64)
    return mix(pair, (proto << np.uint64(32)) | ports | dports)
