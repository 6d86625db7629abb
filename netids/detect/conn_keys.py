"""The key of a packet's connection: a 64-bit hash of its two endpoints, the same both ways.

ICMP messages are keyed as Zeek keys them (``ICMPAnalyzer``'s ports): the type as the source
port and, as the destination port, the counterpart type of a request or reply (an echo
request's is an echo reply, so both fall in one connection), or the code of a one-way message.
"""

from __future__ import annotations

import numpy as np

from netids.detect.conn_records import splitmix
from netids.detect.packets import PROTO_ICMP, PROTO_ICMPV6, PacketBatch


def _counterparts(pairs: dict[int, int]) -> np.ndarray:
    table = np.full(256, -1, dtype=np.int32)
    for a, b in pairs.items():
        table[a], table[b] = b, a
    return table


# Zeek's ICMP4_counterpart / ICMP6_counterpart: request and reply types; -1: one-way (code)
ICMP4_PAIRS = _counterparts({8: 0, 13: 14, 15: 16, 10: 9, 17: 18})
ICMP6_PAIRS = _counterparts({128: 129, 133: 134, 135: 136, 130: 131, 139: 140, 144: 145})


def connection_keys(p: PacketBatch, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per packet: a 64-bit hash of its connection (the same both ways), whether its source is
    the key's first endpoint, and its (source, destination) ports (ICMP: Zeek's type and
    counterpart type, or the code for one-way messages)."""
    proto = p.proto[rows]
    itype = np.clip(p.icmp_type[rows], 0, 255)
    counter = np.where(proto == PROTO_ICMP, ICMP4_PAIRS[itype], ICMP6_PAIRS[itype])
    counter = np.where(counter < 0, p.icmp_code[rows], counter)
    icmp = (proto == PROTO_ICMP) | (proto == PROTO_ICMPV6)
    a = np.where(icmp, itype, p.sport[rows]).astype(np.int64)
    b = np.where(icmp, counter, p.dport[rows]).astype(np.int64)
    sh, sl, dh, dl = p.src_hi[rows], p.src_lo[rows], p.dst_hi[rows], p.dst_lo[rows]
    src_low = (sh < dh) | ((sh == dh) & ((sl < dl) | ((sl == dl) & (a <= b))))
    h = splitmix(np.where(src_low, sh, dh))
    h = splitmix(h ^ np.where(src_low, sl, dl))
    h = splitmix(h ^ np.where(src_low, dh, sh))
    h = splitmix(h ^ np.where(src_low, dl, sl))
    lo_port, hi_port = np.where(src_low, a, b), np.where(src_low, b, a)
    h = splitmix(h ^ ((lo_port << 24) | (hi_port << 8) | proto).astype(np.uint64))
    return h, src_low, np.stack([a, b], axis=1)
