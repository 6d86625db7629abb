"""Behaviour evidence per key, looked up per packet: "one score per packet still" (issue 17,
item 4).

The behaviour detectors score each connection record as a *share* of their alert threshold
(1.0: an alert is due) for its key: the scanner (source address), the guesser (source, server,
login service) and the beaconing pair (source, destination, port, protocol).
:class:`BehaviourEvidence` keeps the latest share of every key with evidence, as the detectors
note it, and for a batch of packets gives each packet the largest share among the keys it
belongs to: its source as a scanner, on the packets a scan is made of (TCP opening without
acknowledging, or resetting; UDP; ICMP echo requests), not the scanner host's other traffic;
its (source, destination, service of the destination port) as a guesser, or the reverse for
the server's replies; its pair as a beacon, either way.

Packets far outnumber records, so the lookup is numpy over the batch: keys are 64-bit hashes
(the same from a record's text addresses as from a packet's address columns), a packet is a
candidate only if one of its addresses is a client of some key, and candidates' keys are
found by binary search in a sorted array of the few keys with evidence. A share lasts as long
as the detector keeps the evidence (a scanner 15 min idle, a guesser's window, a pair's window)
and the table is bounded like the detectors' own state (least recently noted keys go).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from netids.detect.behaviour_base import BoundedMap
from netids.detect.behaviour_brute import LOGIN_SERVICES, VNC_PORTS, login_service
from netids.detect.conn_keys import ICMP4_PAIRS, ICMP6_PAIRS
from netids.detect.conn_records import SERVICES, ConnRecord, splitmix
from netids.detect.packets import (
    IPV4_MAPPED_HI,
    IPV4_MAPPED_LO,
    PROTO_ICMP,
    PROTO_ICMPV6,
    PROTO_TCP,
    PROTO_UDP,
    PacketBatch,
    parse_ip,
)

SCAN, BRUTE, BEACON = 1, 2, 3  # evidence kinds; 0: none
KIND_NAMES = ("", "scan", "brute force", "beaconing")
_MASK = (1 << 64) - 1
_PROTO_IDS = {"tcp": PROTO_TCP, "udp": PROTO_UDP, "icmp": PROTO_ICMP}
_SERVICE_IDS = {name: i + 1 for i, name in enumerate(LOGIN_SERVICES)}


def _login_table() -> np.ndarray:
    """The login service id of every TCP destination port (0: none), as
    :func:`~netids.detect.behaviour_brute.login_service` decides it for a record."""
    table = np.zeros(65536, dtype=np.uint64)
    for port in range(65536):
        name = SERVICES.get(("tcp", port))
        if name == "smtp" and port == 25:
            continue
        if name in LOGIN_SERVICES:
            table[port] = _SERVICE_IDS[name]
        elif port in VNC_PORTS:
            table[port] = _SERVICE_IDS["vnc"]
    return table


LOGIN_PORTS = _login_table()


@dataclass(frozen=True, slots=True)
class EvidenceConfig:
    """How long a key's share lasts after its latest record, and how many keys are held."""

    scan_for: float = 900.0  # the scan detector's idle time
    brute_for: float = 1800.0  # the brute-force detector's window
    beacon_for: float = 6 * 3600.0  # the beacon detector's window
    capacity: int = 40960  # keys held: the three detectors' own bounds together


def _mix(h: int, x: int) -> int:
    """:func:`~netids.detect.conn_records.splitmix` of ``h ^ x`` on Python ints."""
    v = ((h ^ x) + 0x9E3779B97F4A7C15) & _MASK
    v = ((v ^ (v >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    v = ((v ^ (v >> 27)) * 0x94D049BB133111EB) & _MASK
    return v ^ (v >> 31)


@lru_cache(maxsize=65536)
def address_key(text: str) -> tuple[int, int]:
    """(hash of an address, its low half) from its text, as :func:`packet_address_keys`
    gives them from address columns.

    >>> from netids.detect.packets import parse_ip
    >>> hi, lo = parse_ip("10.0.0.7")
    >>> keys = packet_address_keys(np.array([hi], np.uint64), np.array([lo], np.uint64))
    >>> address_key("10.0.0.7")[0] == int(keys[0])
    True
    """
    if not text:  # no address (format_ip's 0, 0)
        hi, lo = 0, 0
    elif text.count(".") == 3 and ":" not in text:  # IPv4, 10 times faster than ipaddress
        a, b, c, d = map(int, text.split("."))
        hi, lo = IPV4_MAPPED_HI, IPV4_MAPPED_LO | (a << 24 | b << 16 | c << 8 | d)
    else:
        hi, lo = parse_ip(text)
    return _mix(_mix(hi, 0), lo), lo


def packet_address_keys(hi: np.ndarray, lo: np.ndarray) -> np.ndarray:
    return splitmix(splitmix(hi.astype(np.uint64)) ^ lo.astype(np.uint64))


def record_keys(r: ConnRecord, scan: bool = True, brute: bool = True,
                beacon: bool = True) -> list[tuple[int, int, int]]:
    """(kind, key, the client's low address half) of the keys of a record asked for: its
    scanner, its guesser (a login service only) and its pair.

    >>> from netids.detect.behaviour_base import record
    >>> [k for k, _, _ in record_keys(record(service="ssh"))]
    [1, 2, 3]
    """
    keys = [(SCAN, *_key(SCAN, r.orig_h, "", 0))] if scan else []
    service = login_service(r) if brute else None
    if service is not None:
        keys.append((BRUTE, *_key(BRUTE, r.orig_h, r.resp_h, _SERVICE_IDS[service])))
    if beacon:
        last = (r.resp_p << 8) | _PROTO_IDS.get(r.proto, 0)
        keys.append((BEACON, *_key(BEACON, r.orig_h, r.resp_h, last)))
    return keys


@lru_cache(maxsize=65536)  # hosts and pairs recur record after record
def _key(kind: int, client: str, server: str, last: int) -> tuple[int, int]:
    """The key of ``kind`` of a client (and server, and service or port and protocol), and
    the client's low address half, as :func:`_packet_keys` makes it from columns."""
    hashed, lo = address_key(client)
    if kind == SCAN:
        return _mix(hashed, SCAN), lo
    return _mix(_mix(_mix(hashed, kind), address_key(server)[0]), last), lo


class BehaviourEvidence:
    """The detectors' latest share per key, and its lookup per packet at the packet's time.

    A batch's records are noted between :meth:`start` and :meth:`lookup`, each as a new
    version of its key's share known from the moment its connection closed (or, for a record
    written on a timeout or eviction, from the end of the batch: the next one sees it), so a
    packet is scored with what was known at its own time, however large the batch.

    >>> from netids.detect.behaviour_base import record
    >>> from netids.detect.decode import decode
    >>> from netids.detect.frames import FrameBatch
    >>> e = BehaviourEvidence()
    >>> e.start()
    >>> e.note(record(ts=10.0, duration=1.0, ended="closed"), 0.5, 0.0, 0.0, now=30.0)
    >>> syn = bytes.fromhex("ffffffffffff02000000000108004500002800004000400600000a0000010a00"
    ...                     "0002c35000160000000000000000500204000000000000")
    >>> share, kind = e.lookup(decode(FrameBatch.from_frames([syn] * 3, [5.0, 20.0, 2000.0])))
    >>> share.tolist(), kind.tolist()  # before it was known; known; after 15 min idle
    ([0.0, 0.5, 0.0], [0, 1, 0])
    """

    def __init__(self, config: EvidenceConfig | None = None) -> None:
        self.config = c = config or EvidenceConfig()
        self.keys: BoundedMap[int, tuple[float, float, int, int]] = BoundedMap(
            c.capacity, lambda: (0.0, 0.0, 0, 0))
        self._lasting = (0.0, c.scan_for, c.brute_for, c.beacon_for)
        self._snapshot: tuple[np.ndarray, ...] | None = None  # the keys as the batch began
        self._dirty = True
        self._log: list[tuple[int, float, float, float, int, int]] = []  # the batch's notes
        self.now = -np.inf  # the newest record noted
        self._beacons = 0  # beacon pairs with evidence (at least: evicted ones still count)

    def __len__(self) -> int:
        return len(self.keys)

    def start(self) -> None:
        """A batch begins: what is known now holds from its first packet on."""
        if self._dirty:
            self._snapshot, self._dirty = self._table(), False
        self._log = []

    def note(self, r: ConnRecord, scan: float, brute: float, beacon: float,
             now: float) -> None:
        """One record's shares (0.0: the record is no evidence of that kind; a beacon pair's
        0.0 is its evidence gone), known from when its connection closed, else from ``now``."""
        gone = beacon <= 0.0 and self._beacons > 0  # a beacon pair's evidence may be gone
        if scan <= 0.0 and brute <= 0.0 and beacon <= 0.0 and not gone:
            return
        self.now = max(self.now, r.ts)
        known = r.ts + (r.duration or 0.0) if r.ended == "closed" else now
        for kind, key, lo in record_keys(r, scan > 0.0, brute > 0.0, beacon > 0.0 or gone):
            share = (0.0, scan, brute, beacon)[kind]
            until = r.ts + self._lasting[kind]
            if share > 0.0:
                self._beacons += kind == BEACON and self.keys.peek(key) is None
                self.keys.get(key)  # made the newest, or added (and the oldest let go)
                self.keys.items[key] = (share, until, kind, lo)
            elif self.keys.peek(key) is None:
                continue
            else:
                self.keys.pop(key)
                self._beacons -= 1
            self._log.append((key, known, share, until, kind, lo))
            self._dirty = True

    def lookup(self, p: PacketBatch) -> tuple[np.ndarray, np.ndarray]:
        """Per packet: the largest share among its keys at its time (float64), and that
        evidence's kind (int8: SCAN, BRUTE, BEACON; 0 none)."""
        share, kind = np.zeros(len(p)), np.zeros(len(p), dtype=np.int8)
        if self._snapshot is None:
            self.start()
        table = self._versions(p.ts)
        if table is None or not len(p):
            return share, kind
        uniq, ranks, positions, shares, until, kinds, clients, base, width = table
        rows = np.flatnonzero(np.isin(p.src_lo, clients) | np.isin(p.dst_lo, clients))
        ts = p.ts[rows]
        for candidate, valid in _packet_keys(p, rows):
            r = np.minimum(np.searchsorted(uniq, candidate), len(uniq) - 1)
            valid = valid & (uniq[r] == candidate)
            at = np.searchsorted(positions, r * width + (ts - base), side="right") - 1
            valid &= at >= 0  # known before the packet: the key's newest such version
            at = np.maximum(at, 0)
            hit = valid & (ranks[at] == r) & (until[at] >= ts)
            found = np.where(hit, shares[at], 0.0)
            better = found > share[rows]
            share[rows] = np.where(better, found, share[rows])
            kind[rows] = np.where(better, kinds[at], kind[rows])
        return share, kind

    def _versions(self, ts: np.ndarray) -> tuple[np.ndarray, ...] | None:
        """Every version of every key with evidence (as the batch began, then the batch's
        notes), ordered by key and by the time it became known, as one float per version."""
        assert self._snapshot is not None
        keys0, shares0, until0, kinds0, lo0 = self._snapshot
        log = self._log
        if not len(keys0) and not log:
            return None
        base = float(ts.min()) if len(ts) else 0.0
        keys = np.concatenate([keys0, np.array([v[0] for v in log], dtype=np.uint64)])
        # known before the batch's first packet is known from its start, as the snapshot is
        known_at = np.maximum(np.concatenate([np.full(len(keys0), -np.inf),
                                              np.array([v[1] for v in log], dtype=np.float64)]),
                              base - 1.0)
        shares = np.concatenate([shares0, np.array([v[2] for v in log], dtype=np.float64)])
        until = np.concatenate([until0, np.array([v[3] for v in log], dtype=np.float64)])
        kinds = np.concatenate([kinds0, np.array([v[4] for v in log], dtype=np.int8)])
        lows = np.concatenate([lo0, np.array([v[5] for v in log], dtype=np.uint64)])
        uniq, rank = np.unique(keys, return_inverse=True)
        top = max(float(ts.max()) if len(ts) else base, float(known_at.max()))
        width = top - base + 2.0  # one key's versions never reach the next key's
        position = rank * width + (known_at - base)
        order = np.argsort(position, kind="stable")
        return (uniq, rank[order], position[order], shares[order], until[order], kinds[order],
                np.unique(lows), base, width)

    def _table(self) -> tuple[np.ndarray, ...]:
        """The keys with evidence as arrays (expired keys go)."""
        for key in [k for k, v in self.keys.items.items() if v[1] < self.now]:
            self.keys.pop(key)
        values = list(self.keys.items.values())
        return (np.fromiter(self.keys.items.keys(), dtype=np.uint64, count=len(values)),
                np.array([v[0] for v in values], dtype=np.float64),
                np.array([v[1] for v in values], dtype=np.float64),
                np.array([v[2] for v in values], dtype=np.int8),
                np.array([v[3] for v in values], dtype=np.uint64))


def _packet_keys(p: PacketBatch,
                 rows: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """(key, whether the packet has it) per key kind a packet may belong to, for ``rows``."""
    src = packet_address_keys(p.src_hi[rows], p.src_lo[rows])
    dst = packet_address_keys(p.dst_hi[rows], p.dst_lo[rows])
    proto = p.proto[rows].astype(np.int64)
    icmp = (proto == PROTO_ICMP) | (proto == PROTO_ICMPV6)
    itype = np.clip(p.icmp_type[rows], 0, 255)
    counter = np.where(proto == PROTO_ICMP, ICMP4_PAIRS[itype], ICMP6_PAIRS[itype])
    counter = np.where(counter < 0, p.icmp_code[rows], counter)
    sport = np.where(icmp, itype, p.sport[rows]).astype(np.int64)
    dport = np.where(icmp, counter, p.dport[rows]).astype(np.int64)
    pid = np.where(icmp, PROTO_ICMP, proto)
    known = (pid == PROTO_TCP) | (pid == PROTO_UDP) | (pid == PROTO_ICMP)
    tcp = pid == PROTO_TCP
    u = np.uint64
    login_to = LOGIN_PORTS[np.clip(dport, 0, 65535)]
    login_from = LOGIN_PORTS[np.clip(sport, 0, 65535)]

    def pair(a: np.ndarray, b: np.ndarray, tag: int, last: np.ndarray) -> np.ndarray:
        return splitmix(splitmix(splitmix(a ^ u(tag)) ^ b) ^ last.astype(np.uint64))

    with np.errstate(over="ignore"):
        beacon_to = (np.maximum(dport, 0) << 8 | np.maximum(pid, 0)).astype(np.uint64)
        beacon_from = (np.maximum(sport, 0) << 8 | np.maximum(pid, 0)).astype(np.uint64)
    flags = p.tcp_flags[rows].astype(np.int64)
    probe = np.where(tcp, ((flags & 0x02 != 0) & (flags & 0x10 == 0)) | (flags & 0x04 != 0),
                     (pid == PROTO_UDP) | (icmp & ((itype == 8) | (itype == 128))))
    return [
        (splitmix(src ^ u(SCAN)), probe),
        (pair(src, dst, BRUTE, login_to), tcp & (login_to > 0)),
        (pair(dst, src, BRUTE, login_from), tcp & (login_from > 0)),
        (pair(src, dst, BEACON, beacon_to), known),
        (pair(dst, src, BEACON, beacon_from), known),
    ]
