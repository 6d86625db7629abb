"""What every behaviour detector shares: the alert record, bounded per-key state, suppression,
and the words of a why.

The detectors (:mod:`netids.detect.behaviour_scan`, :mod:`netids.detect.behaviour_brute`) are
policies on connection records; this module is their mechanism, as Zeek splits its notice
framework from the scripts that raise notices. Nothing here does I/O.
"""

from __future__ import annotations

import ipaddress
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from hashlib import blake2b
from typing import Generic, TypeVar

import numpy as np

from netids.detect.conn_records import ConnRecord
from netids.detect.sketches import HyperLogLog

SEVERITIES = ("low", "medium", "high", "critical")  # in rising order


@dataclass(frozen=True, slots=True)
class BehaviourAlert:
    """One detection on connection records: what, who, when, how sure and why.

    ``count`` is the evidence the detector counts (failed (host, port) pairs of a scanner,
    login attempts of a guesser); ``uids`` are the connections behind it, at most
    ``uids_kept`` of them (the first ones), so an alert stays small whatever the attack's size.
    """

    kind: str  # a key of event_records.BEHAVIOUR_KINDS (vertical_scan, brute_force, beacon...)
    severity: str  # one of SEVERITIES
    source: str  # the scanner or guesser
    targets: tuple[str, ...]  # "host", "host:port" or ":port", at most a few, most hit first
    service: str | None  # the service guessed at (brute force), None for scans
    first: float  # first connection counted (packet time)
    last: float  # last connection counted
    count: int  # evidence counted (see above)
    uids: tuple[str, ...]  # the connections behind it, bounded
    why: str  # the evidence in plain words
    key: str  # what suppression counts alerts by: one per key per hour unless it escalates


K = TypeVar("K")
V = TypeVar("V")


class BoundedMap(Generic[K, V]):
    """A dict that holds at most ``capacity`` keys, forgetting the least recently touched.

    Connection records arrive far less often than packets, so a plain ordered dict keeps
    up; the bound is what matters (a scan of millions of sources costs ``capacity`` entries).

    >>> m = BoundedMap(2, dict)
    >>> m.get("a")["n"] = 1; _ = m.get("b"), m.get("c"); list(m.keys()), m.evicted
    (['b', 'c'], 1)
    """

    def __init__(self, capacity: int, make: Callable[[], V]) -> None:
        assert capacity >= 1
        self.capacity, self.make = capacity, make
        self.items: OrderedDict[K, V] = OrderedDict()
        self.evicted = 0

    def __len__(self) -> int:
        return len(self.items)

    def get(self, key: K) -> V:
        """The value of ``key``, made fresh if absent; touching it makes it the newest."""
        value = self.items.get(key)
        if value is None:
            value = self.items[key] = self.make()
            if len(self.items) > self.capacity:
                self.items.popitem(last=False)
                self.evicted += 1
        else:
            self.items.move_to_end(key)
        return value

    def peek(self, key: K) -> V | None:
        return self.items.get(key)

    def pop(self, key: K) -> None:
        self.items.pop(key, None)

    def keys(self) -> Iterator[K]:
        return iter(list(self.items))


class Suppressor:
    """One alert per key per ``hold`` seconds, unless it escalates (a higher severity, or its
    evidence at least ``factor`` times what the last alert reported), as Zeek's notice
    suppression (``Notice::default_suppression_interval``, 1 h) with Slips' rule of alerting
    again when the evidence grows by an order of magnitude (its log10 steps).

    >>> s = Suppressor(hold=3600.0, factor=10.0)
    >>> s.allow("k", 0.0, "medium", 25), s.allow("k", 60.0, "medium", 100)
    (True, False)
    >>> s.allow("k", 120.0, "medium", 250), s.allow("k", 180.0, "high", 251)
    (True, True)
    """

    def __init__(self, hold: float = 3600.0, factor: float = 10.0, capacity: int = 65536) -> None:
        self.hold, self.factor = hold, factor
        self.last: BoundedMap[str, list[float]] = BoundedMap(capacity, lambda: [-1e300, -1.0, 0.0])
        self.suppressed = 0

    def allow(self, key: str, now: float, severity: str, count: int) -> bool:
        """Whether an alert on ``key`` goes out now; if it does, it is remembered."""
        state = self.last.get(key)
        when, rank, counted = state
        new_rank = SEVERITIES.index(severity)
        if now - when < self.hold and new_rank <= rank and count < counted * self.factor:
            self.suppressed += 1
            return False
        state[:] = [now, float(new_rank), float(count)]
        return True


def in_order(record: ConnRecord) -> tuple[float, str, int, str, int, str]:
    """The order the detectors read records in: by time, then by endpoints, never by uid
    (random per run) nor by the order a batch happened to hand them over, so that a capture
    gives the same alerts every run. Not cached: a cache keyed by records kept up to
    65,536 of them alive and hashed every field of each to save building a tuple."""
    return (record.ts, record.orig_h, record.orig_p, record.resp_h, record.resp_p,
            record.proto)


@lru_cache(maxsize=65536)  # per record, on few addresses: ipaddress parses slowly
def is_group_address(address: str) -> bool:
    """Multicast or broadcast: nobody answers those as a server does, so silence there is no
    failed connection (mDNS, SSDP, NetBIOS name queries to x.x.x.255).

    >>> is_group_address("224.0.0.251"), is_group_address("10.0.0.255"), is_group_address("::1")
    (True, True, False)
    """
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return ip.is_multicast or (ip.version == 4 and address.endswith(".255")) or (
        ip.version == 4 and ip.is_unspecified)


def span_text(seconds: float) -> str:
    """A time span in the words of an alert.

    >>> span_text(4.2), span_text(250), span_text(7 * 3600 + 600)
    ('4 s', '4 min', '7 h 10 min')
    """
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    hours, rest = divmod(int(seconds), 3600)
    return f"{hours} h {rest // 60} min" if rest >= 60 else f"{hours} h"


def size_text(size: float) -> str:
    """Bytes in the words of an alert.

    >>> size_text(900), size_text(2048), size_text(3_500_000)
    ('900 B', '2 kB', '3.5 MB')
    """
    if size < 1000:
        return f"{size:.0f} B"
    if size < 1_000_000:
        return f"{size / 1000:.0f} kB"
    return f"{size / 1_000_000:.1f} MB"


def record(**fields: object) -> ConnRecord:
    """A connection record with plain defaults (a TCP attempt from 10.0.0.1 to 10.0.0.2:22),
    ``fields`` overriding them: for examples and hand-built edge cases.

    >>> record(resp_p=80, conn_state="REJ").resp_p
    80
    """
    base: dict[str, object] = dict(
        ts=0.0, uid="C0", orig_h="10.0.0.1", orig_p=40000, resp_h="10.0.0.2", resp_p=22,
        proto="tcp", service=None, duration=None, orig_bytes=None, resp_bytes=None,
        conn_state="S0", missed_bytes=0, history="S", orig_pkts=1, orig_ip_bytes=60,
        resp_pkts=0, resp_ip_bytes=0, orig_sizes=(), resp_sizes=(), in_progress=False,
        ended="timeout")
    base.update(fields)
    return ConnRecord(**base)  # type: ignore[arg-type]


class Distinct:
    """Distinct keys of one source, counted exactly up to ``exact_up_to``, then by a
    :class:`~netids.detect.sketches.HyperLogLog` fed in batches of ``every`` (its estimate is
    refreshed then): one record at a time, a numpy call per key would cost more than the
    count is worth. Memory stays at most about ``exact_up_to`` ints or 2 KiB.

    >>> d = Distinct(exact_up_to=4, every=8)
    >>> for k in [1, 2, 2, 3]: d.add(k)
    >>> d.estimate, d.exact
    (3, True)
    >>> for k in range(1000): d.add(key_hash(k))
    >>> d.exact, abs(d.estimate - 1000) < 100
    (False, True)
    """

    __slots__ = ("exact_up_to", "every", "_set", "_hll", "_pending", "_estimate")

    def __init__(self, exact_up_to: int = 64, every: int = 8) -> None:
        self.exact_up_to, self.every = exact_up_to, every
        self._set: set[int] | None = set()
        self._hll: HyperLogLog | None = None
        self._pending: list[int] = []
        self._estimate = 0

    @property
    def exact(self) -> bool:
        return self._set is not None

    @property
    def estimate(self) -> int:
        return len(self._set) if self._set is not None else self._estimate

    def add(self, key: int) -> None:
        if self._set is not None:
            self._set.add(key)
            if len(self._set) <= self.exact_up_to:
                return
            self._hll, self._pending, self._set = HyperLogLog(11), list(self._set), None
            self._flush()
            return
        self._pending.append(key)
        if len(self._pending) >= self.every:
            self._flush()

    def _flush(self) -> None:
        assert self._hll is not None
        self._hll.add(np.array(self._pending, dtype=np.uint64))
        self._pending = []
        self._estimate = max(self._estimate, self._hll.estimate)


def key_hash(*parts: object) -> int:
    """A stable 64-bit hash of a key's parts (Python's own hash of text changes per run).

    >>> key_hash("10.0.0.2", 22, "tcp") == key_hash("10.0.0.2", 22, "tcp")
    True
    """
    text = "\x1f".join(map(str, parts)).encode()
    return int.from_bytes(blake2b(text, digest_size=8).digest(), "little")
