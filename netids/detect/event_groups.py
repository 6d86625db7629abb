"""The working state of event aggregation: a batch's anomalous packets with their event keys,
their runs grouped by key and time, open events, and the fans counting distinct peers.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from netids.detect.event_records import EventConfig, EventUpdate, Sample, severity
from netids.detect.scored import ScoredBatch


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
    sources: set[int] = field(default_factory=set)
    targets: set[int] = field(default_factory=set)
    samples: int = 0
    first_target: str = ""  # shown as dst while targets merged from the first packet are one

    def update(self, config: EventConfig, new_samples: tuple[Sample, ...]) -> EventUpdate:
        return EventUpdate(
            id=self.id,
            first_seen=self.first_seen,
            last_seen=self.last_seen,
            src=self.src,
            dst=self.dst or (self.first_target if len(self.targets) == 1 else ""),
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
            src_count=max(len(self.sources), 1),
            dst_count=max(len(self.targets), 1),
            new_samples=new_samples,
        )


@dataclass(slots=True)
class Fan:
    """Distinct peers of one (address, proto, kind) group, until they are 'many'."""

    last_seen: float
    peers: set[int] = field(default_factory=set)
    many: bool = False


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
    src_int: np.ndarray = field(init=False)  # object [m]: addresses as Python ints
    dst_int: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.src_int = (self.src[:, 0].astype(object) << 64) | self.src[:, 1].astype(object)
        self.dst_int = (self.dst[:, 0].astype(object) << 64) | self.dst[:, 1].astype(object)


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
