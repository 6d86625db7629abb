"""The working state of event aggregation: a batch's anomalous packets with their event keys,
their runs grouped by key and time, and open events (the fans counting distinct peers are in
:mod:`netids.detect.event_fans`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from netids.detect.event_records import (
    ATTACK_KINDS,
    EXACT_DISTINCT,
    EventConfig,
    EventUpdate,
    Sample,
    severity,
)
from netids.detect.explain import SCANS, TARGET_FLOOD
from netids.detect.packets import format_ip
from netids.detect.scored import ScoredBatch
from netids.detect.sketches import DistinctCount, TopK


@dataclass(slots=True)
class OpenEvent:
    """Mutable state of an open event."""

    id: str
    first_seen: float
    last_seen: float
    src: str
    dst: str
    src_port: int | None
    dst_port: int | None
    proto: str
    kind: str
    packets: int = 0  # its own and the answers it provoked
    scored: int = 0  # its own: the packets its scores and explanation come from
    score_sum: float = 0.0
    score_max: float = -1.0
    explanation: str = ""
    threshold: float = 0.0
    sources: DistinctCount = field(default_factory=lambda: DistinctCount(EXACT_DISTINCT))
    targets: DistinctCount = field(default_factory=lambda: DistinctCount(EXACT_DISTINCT))
    samples: int = 0
    first_target: str = ""  # shown as dst while targets merged from the first packet are one
    top_sources: TopK | None = None  # the heaviest sources, once sources merged ("")
    top_names: dict[int, str] = field(default_factory=dict)  # hash -> text, for those held

    def count_sources(self, hashes: np.ndarray, src: np.ndarray) -> None:
        """Count the heaviest sources (``src`` [m, 2] addresses, ``hashes`` theirs), naming
        only those the summary holds."""
        if self.top_sources is None or len(hashes) == 0:
            return
        self.top_sources.add(hashes)
        held = self.top_sources.keys.tolist()
        self.top_names = {h: self.top_names[h] for h in held if h in self.top_names}
        missing = [h for h in held if h not in self.top_names]
        if missing:
            _, at = np.unique(hashes, return_index=True)
            where = dict(zip(np.unique(hashes).tolist(), at.tolist(), strict=True))
            for h in missing:
                if h in where:
                    i = where[h]
                    self.top_names[h] = format_ip(src[i, 0], src[i, 1])

    def update(self, config: EventConfig, new_samples: tuple[Sample, ...]) -> EventUpdate:
        return EventUpdate(
            id=self.id,
            first_seen=self.first_seen,
            last_seen=self.last_seen,
            src=self.src,
            dst=self.dst or (self.first_target if self.targets.estimate == 1 else ""),
            src_port=self.src_port,
            dst_port=self.dst_port,
            proto=self.proto,
            kind=self.kind,
            packets=self.packets,
            score_max=self.score_max,
            score_mean=self.score_sum / max(self.scored, 1),
            severity=severity(self.score_max, config),
            explanation=self.explanation,
            threshold=self.threshold,
            src_count=max(self.sources.estimate, 1),
            dst_count=max(self.targets.estimate, 1),
            new_samples=new_samples,
            top_sources=tuple((self.top_names.get(h, "?"), c)
                              for h, c in self.top_sources.top()) if self.top_sources else (),
        )


@dataclass(slots=True)
class Keyed:
    """A batch's anomalous packets (positions ``idx`` in the batch) with their event keys."""

    scored: ScoredBatch
    idx: np.ndarray
    ts: np.ndarray  # float64 [m]
    scores: np.ndarray  # float64 [m]
    src: np.ndarray  # uint64 [m, 2]
    dst: np.ndarray  # uint64 [m, 2]
    key: np.ndarray  # uint64 [m, 7]: src, dst, (ptag, kind), merge flags
    own: np.ndarray  # bool [m]: not an answer to another host's packet
    now: float
    src_h: np.ndarray  # uint64 [m]: hashes of the addresses (sketches.hash64)
    dst_h: np.ndarray


@dataclass(slots=True)
class Groups:
    """Runs of packets with one key and no gap longer than ``gap``, in time order, with their
    ports and scores reduced (over the opener's own packets)."""

    order: np.ndarray  # positions in idx, grouped, each group in time order
    ts_s: np.ndarray  # their times
    starts: np.ndarray
    ends: np.ndarray
    sport_lo: list[int]
    sport_hi: list[int]
    dport_lo: list[int]
    dport_hi: list[int]
    score_sum: np.ndarray
    scored_count: np.ndarray

    @classmethod
    def of(cls, b: Keyed, gap: float) -> Groups:
        _, inv = np.unique(b.key, axis=0, return_inverse=True)
        inv = inv.ravel()
        order = np.lexsort((b.ts, inv))
        inv_s, ts_s = inv[order], b.ts[order]
        cut = np.ones(len(order), dtype=bool)
        cut[1:] = (inv_s[1:] != inv_s[:-1]) | (np.diff(ts_s) > gap)
        starts = np.flatnonzero(cut)
        ends = np.append(starts[1:], len(order))
        # an event's ports, scores and explanation are its opener's: answers only join it
        own_s = b.own[order]
        p = b.scored.packets
        sport, dport = p.sport[b.idx][order], p.dport[b.idx][order]
        none, lots = np.int32(-2), np.int32(1 << 30)  # below and above every port
        return cls(
            order, ts_s, starts, ends,
            np.minimum.reduceat(np.where(own_s, sport, lots), starts).tolist(),
            np.maximum.reduceat(np.where(own_s, sport, none), starts).tolist(),
            np.minimum.reduceat(np.where(own_s, dport, lots), starts).tolist(),
            np.maximum.reduceat(np.where(own_s, dport, none), starts).tolist(),
            np.add.reduceat(np.where(own_s, b.scores[order], 0.0), starts),
            np.add.reduceat(own_s.astype(np.int64), starts),
        )

    def t0(self, n: int) -> float:
        return float(self.ts_s[self.starts[n]])

    def t1(self, n: int) -> float:
        return float(self.ts_s[self.ends[n] - 1])

    def ports(self, n: int) -> tuple[int, int, int, int]:
        return self.sport_lo[n], self.sport_hi[n], self.dport_lo[n], self.dport_hi[n]


BY_DESTINATION = (TARGET_FLOOD, "reflection flood")  # kinds whose evidence is the destination's


def by_destination(kind: str) -> bool:
    """Whether events of ``kind`` are keyed by their destination alone, their sources
    counted: what made the packets anomalous is the traffic reaching that host (packets
    hitting a busy host, replies it never asked for), so a flooded server's normal clients
    join the one event about it instead of each being named as the source of a flood.

    >>> [by_destination(k) for k in ("target under flood", "reflection flood", "flood")]
    [True, True, False]
    """
    return kind in BY_DESTINATION


def by_source(kind: str) -> bool:
    """Whether events of ``kind`` are keyed by their source alone, their targets counted: a
    scan, and a deviation that names no attack ("unusual size"), whose packets to several
    peers are one host's doing, not one incident per peer.

    >>> [by_source(k) for k in ("port scan", "unusual size", "flood", "ARP spoofing")]
    [True, True, False, False]
    """
    return kind in SCANS or kind not in ATTACK_KINDS
