"""An answer is as anomalous as what it answers: a scanned port's reset, a SYN-ACK to a
probe, an ICMP "destination unreachable" to a UDP probe take the score of the packet they
answer when that is higher than their own.

A packet model judges each packet by its own headers and its sender's context, and a scanned
host's resets come from a host that is doing nothing unusual: on the dev mix none of the
1,071 resets and unreachables of its port scans was detected, while 69 % of the probes
they answer were. Zeek and Suricata judge the connection, probe and answer together; this
does the same for the packets, causally (an answer takes what its probe scored, never the
other way), so the score CSV, the chart and the events show the whole exchange. The answer
joins the prober's event (:mod:`netids.detect.event_answers`), never one of its own.

What answers: a TCP segment with RST, or with SYN and ACK, to the socket of a packet sent
the other way within ``ANSWER_SECONDS``; an ICMP or ICMPv6 destination unreachable to the
host pair of such a packet. Only packets scoring at least ``OPENER_NINES`` are remembered
(one normal packet in a hundred): an answer to an ordinary packet keeps its own score. Two
fixed direct-mapped memories (sockets, host pairs) keep them for the batches after.

>>> from scapy.all import Ether, IP, TCP
>>> from netids.detect.decode import decode
>>> from netids.detect.frames import FrameBatch
>>> probe = Ether() / IP(src="10.0.0.9", dst="10.0.0.5") / TCP(sport=40000, dport=23, flags="S")
>>> reset = Ether() / IP(src="10.0.0.5", dst="10.0.0.9") / TCP(sport=23, dport=40000, flags="RA")
>>> other = Ether() / IP(src="10.0.0.5", dst="10.0.0.9") / TCP(sport=23, dport=40001, flags="RA")
>>> p = decode(FrameBatch.from_frames([bytes(f) for f in (probe, reset, other)],
...                                   np.array([0.0, 0.001, 0.002])))
>>> nines, kind = Answered(64).raise_answers(p, np.array([6.0, 0.5, 0.5]), np.array([4, -1, -1]))
>>> nines.tolist(), kind.tolist()
([6.0, 6.0, 0.5], [-1, 4, -1])
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from netids.detect.hashing import mix, socket_key
from netids.detect.keytable import TableStats
from netids.detect.packets import PacketBatch

ANSWER_SECONDS = 1.0  # an answer comes within this of what it answers (a LAN's or a
# continent's round trip, a host's ICMP rate limit)
OPENER_NINES = 2.0  # packets scoring at least this are remembered: 1 normal packet in 100
RST, SYN, ACK = 0x04, 0x02, 0x10
TCP, UDP, ICMP, ICMP6 = 6, 17, 1, 58
UNREACHABLE = {ICMP: 3, ICMP6: 1}  # destination unreachable, per ICMP version


@dataclass
class Recent:
    """A fixed, direct-mapped memory of the last second's remembered packets, one slot per
    key hash: no per-key work, so a flood of new sockets costs what a quiet network does. A
    newer key takes a slot from an older one; ``lost`` counts those taken while the older was
    still within ANSWER_SECONDS (an answer that may then keep its own score)."""

    name: str
    size: int = 1 << 16
    key: np.ndarray = field(init=False)
    ts: np.ndarray = field(init=False)
    nines: np.ndarray = field(init=False)
    kind: np.ndarray = field(init=False)
    lost: int = 0

    def __post_init__(self) -> None:
        assert self.size & (self.size - 1) == 0, "a power of two"
        self.key = np.zeros(self.size, np.uint64)
        self.ts = np.full(self.size, -np.inf)
        self.nines = np.zeros(self.size)
        self.kind = np.full(self.size, -1, np.int64)

    def put(self, keys: np.ndarray, ts: np.ndarray, nines: np.ndarray,
            kinds: np.ndarray) -> None:
        """Remember packets in time order (a later one under a key, or its slot, wins)."""
        if len(keys) == 0:
            return
        slot = self._slot(keys)
        last = np.unique(slot[::-1], return_index=True)[1]  # each slot's last packet
        at = len(slot) - 1 - last
        s = slot[at]
        live = (self.key[s] != keys[at]) & (self.ts[s] >= ts[at] - ANSWER_SECONDS)
        # keys of this batch that lost their slot to a later one, and fresh ones pushed out
        self.lost += len(np.unique(keys)) - len(at) + int(live.sum())
        self.key[s], self.ts[s], self.nines[s], self.kind[s] = keys[at], ts[at], nines[at], \
            kinds[at]

    def get(self, keys: np.ndarray, ts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(nines, kind code) remembered under each key within ANSWER_SECONDS before its
        ``ts``; (0, -1) where none."""
        slot = self._slot(keys)
        hit = (self.key[slot] == keys) & (ts - self.ts[slot] <= ANSWER_SECONDS)
        return np.where(hit, self.nines[slot], 0.0), np.where(hit, self.kind[slot], -1)

    def _slot(self, keys: np.ndarray) -> np.ndarray:
        """A key's slot: its top bits, which the keys' last multiplication mixes best."""
        return (keys >> np.uint64(64 - self.size.bit_length() + 1)).astype(np.int64)

    def stats(self) -> TableStats:
        return TableStats(self.name, int((self.key != 0).sum()), self.size, self.lost,
                          evicted_as="taken while fresh")


class Answered:
    """Raises answers to the score of the packet they answer, across batches."""

    def __init__(self, size: int = 1 << 16) -> None:
        # a remembered packet's directed socket, and its directed host pair
        self.memories = (Recent("answered sockets", size), Recent("answered pairs", size))

    def raise_answers(self, p: PacketBatch, nines: np.ndarray,
                      kinds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(nines with every answer raised to what it answers, float64 [n]; the kind code of
        what each raised answer answers, -1 elsewhere). ``kinds``: int64 [n], a code of each
        packet's kind, -1 for none (the caller's numbering). Remembers this batch's packets
        for the batches after it."""
        n = len(p)
        out, answered = np.asarray(nines, np.float64).copy(), np.full(n, -1, np.int64)
        if n == 0:
            return out, answered
        src, dst = mix(p.src_hi, p.src_lo), mix(p.dst_hi, p.dst_lo)
        tcp = p.proto == TCP
        flags = p.tcp_flags.astype(np.int64)
        tcp_answer = tcp & (flags >= 0) & (((flags & RST) != 0)
                                           | ((flags & (SYN | ACK)) == (SYN | ACK)))
        icmp_answer = np.zeros(n, bool)
        for proto, kind in UNREACHABLE.items():
            icmp_answer |= (p.proto == proto) & (p.icmp_type == kind)
        remembered = (p.ip_version > 0) & (out >= OPENER_NINES)
        ported = remembered & (tcp | (p.proto == UDP)) & (p.sport >= 0)
        pair, back = mix(src, dst), mix(dst, src)  # each direction's host pair
        keys = ((socket_key(pair, p.proto, p.sport, p.dport),
                 socket_key(back, p.proto, p.dport, p.sport), tcp_answer, ported),
                (pair, back, icmp_answer, remembered))
        own = out.copy()  # what answers take: a packet's own score, not one it inherited
        for memory, (mine, theirs, answers, keep) in zip(self.memories, keys, strict=True):
            rows = np.flatnonzero(answers)
            if len(rows):
                nines_to, kind_to = self._answered(memory, rows, theirs[rows], mine, keep,
                                                   p.ts, own, kinds)
                up = nines_to > out[rows]
                out[rows[up]], answered[rows[up]] = nines_to[up], kind_to[up]
            memory.put(mine[keep], p.ts[keep], own[keep], kinds[keep])
        return out, answered

    def stats(self) -> list[TableStats]:
        return [memory.stats() for memory in self.memories]

    @staticmethod
    def _answered(memory: Recent, rows: np.ndarray, wanted: np.ndarray, mine: np.ndarray,
                  keep: np.ndarray, ts: np.ndarray, nines: np.ndarray,
                  kinds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(nines, kind code) of what answers ``rows`` answer (their answered keys
        ``wanted``): the last packet remembered under that key before them, in this batch,
        else in an earlier one, within ANSWER_SECONDS; (0, -1) for none."""
        here = np.flatnonzero(keep)
        last = _last_before(mine[here], here, wanted, rows)
        found = here[np.maximum(last, 0)] if len(here) else np.zeros(len(rows), np.int64)
        fresh = (last >= 0) & (ts[rows] - ts[found] <= ANSWER_SECONDS)
        nines_to = np.where(fresh, nines[found], 0.0)
        kind_to = np.where(fresh, kinds[found], -1)
        earlier = np.flatnonzero(last < 0)
        if len(earlier):
            nines_to[earlier], kind_to[earlier] = memory.get(wanted[earlier], ts[rows[earlier]])
        return nines_to, kind_to


def _last_before(keys: np.ndarray, at: np.ndarray, wanted: np.ndarray,
                 rows: np.ndarray) -> np.ndarray:
    """Per ``wanted`` key: the index into ``keys`` (seen at rows ``at``) of its last
    occurrence at a row before ``rows``, -1 when none.

    >>> _last_before(np.array([5, 7, 5], np.uint64), np.array([0, 2, 4]),
    ...              np.array([5, 5, 7, 9, 5], np.uint64), np.array([3, 9, 1, 8, 4])).tolist()
    [0, 2, -1, -1, 0]
    """
    k = len(keys)
    if k == 0:
        return np.full(len(wanted), -1, np.int64)
    key = np.concatenate([keys, wanted])
    row = np.concatenate([at, rows])
    is_key = np.concatenate([np.ones(k, bool), np.zeros(len(wanted), bool)])
    order = np.lexsort((is_key, row, key))  # by key, row, and a wanted row before a key's
    seen = np.where(is_key[order], np.arange(len(order)), -1)
    last = np.maximum.accumulate(seen)  # the last key occurrence at or before each place
    same = (last >= 0) & (key[order][np.maximum(last, 0)] == key[order])
    out = np.full(len(order), -1, np.int64)
    out[order] = np.where(same, order[np.maximum(last, 0)], -1)
    return out[k:]
