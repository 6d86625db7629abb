"""What the dashboard reads of a monitoring session: totals, per-second series and recent
events, bounded, updated once per batch by the controller with a handful of numpy reductions
(nothing loops over packets in Python), so the UI's cost does not grow with the packet rate.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np

from netids.detect.event_records import EventUpdate
from netids.detect.keytable import TableStats
from netids.detect.packets import protocol_name
from netids.detect.scored import ScoredBatch
from netids.store.writer import StoreStats

HISTORY_SECONDS = 300  # points kept in each timeline (one per second)
RECENT_EVENTS = 500  # events kept for the live table; the database keeps them all


@dataclass(slots=True)
class Timeline:
    """Per-second series for the charts, bounded to HISTORY_SECONDS points."""

    seconds: deque[float] = field(default_factory=lambda: deque(maxlen=HISTORY_SECONDS))
    packets: deque[int] = field(default_factory=lambda: deque(maxlen=HISTORY_SECONDS))
    max_score: deque[float] = field(default_factory=lambda: deque(maxlen=HISTORY_SECONDS))
    anomalies: deque[int] = field(default_factory=lambda: deque(maxlen=HISTORY_SECONDS))

    def add(self, scored: ScoredBatch) -> None:
        """Fold a batch into per-second buckets keyed by packet time."""
        ts = scored.packets.ts
        if len(ts) == 0:
            return
        second = np.floor(ts)
        keys, inverse = np.unique(second, return_inverse=True)
        counts = np.bincount(inverse, minlength=len(keys))
        peaks = np.full(len(keys), 0.0)
        np.maximum.at(peaks, inverse, scored.scores.astype(np.float64))
        flagged = np.bincount(inverse, weights=scored.anomalous, minlength=len(keys))
        for k, c, p, a in zip(keys.tolist(), counts.tolist(), peaks.tolist(), flagged.tolist(),
                              strict=True):
            if self.seconds and k == self.seconds[-1]:
                self.packets[-1] += c
                self.max_score[-1] = max(self.max_score[-1], p)
                self.anomalies[-1] += int(a)
            elif not self.seconds or k > self.seconds[-1]:
                self.seconds.append(k)
                self.packets.append(c)
                self.max_score.append(p)
                self.anomalies.append(int(a))


@dataclass(slots=True)
class LiveState:
    """What the dashboard shows; replaced field by field as batches arrive."""

    running: bool = False
    source: str = ""  # "eth0 (filter: tcp)", "capture.pcap", ...
    message: str = ""  # last plain-words status or error, for a notification
    error: str = ""  # why the session stopped, '' when it ended normally or runs
    packets: int = 0
    tcp: int = 0
    udp: int = 0
    other: int = 0
    anomalies: int = 0
    undecoded: int = 0
    kernel_drops: int = 0
    queue_drops: int = 0
    packets_per_second: float = 0.0  # over the last second or so, not the session's average
    rate_mark: tuple[float, int] = (0.0, 0)  # (monotonic time, packets) the rate runs from
    session_events: int = 0  # events this session opened (the table keeps earlier ones too)
    threshold: float = 0.0
    protocols: dict[str, int] = field(default_factory=dict)
    timeline: Timeline = field(default_factory=Timeline)
    events: deque[EventUpdate] = field(default_factory=lambda: deque(maxlen=RECENT_EVENTS))
    store: StoreStats | None = None
    tables: list[TableStats] = field(default_factory=list)  # bounded state: size, evictions
    generation: int = 0  # increases on every change, so timers redraw only when needed


def count_protocols(counts: dict[str, int], scored: ScoredBatch) -> None:
    p = scored.packets
    pairs = np.stack([p.ethertype.astype(np.int64), p.proto.astype(np.int64)], axis=1)
    uniq, n = np.unique(pairs, axis=0, return_counts=True)
    for (ethertype, proto), c in zip(uniq.tolist(), n.tolist(), strict=True):
        name = protocol_name(ethertype, proto)
        counts[name] = counts.get(name, 0) + c


def last_second_rate(mark: tuple[float, int], now: float, packets: int,
                     shown: float) -> tuple[float, tuple[float, int]]:
    """(packets per second since ``mark``, the new mark) once a second has passed since it;
    until then the rate shown and the same mark.

    >>> last_second_rate((10.0, 1000), 10.4, 5000, 7.0)
    (7.0, (10.0, 1000))
    >>> last_second_rate((10.0, 1000), 12.0, 5000, 7.0)
    (2000.0, (12.0, 5000))
    """
    t0, p0 = mark
    if now - t0 < 1.0:
        return shown, mark
    return (packets - p0) / (now - t0), (now, packets)
