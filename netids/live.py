"""What the dashboard reads of a monitoring session: totals, per-second series and recent
events, bounded, updated once per batch by the controller with a handful of numpy reductions
(nothing loops over packets in Python), so the UI's cost does not grow with the packet rate.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from netids.capture.files import FileSource
from netids.capture.live import LiveSource
from netids.capture.progress import Snapshot
from netids.detect.event_records import EventUpdate
from netids.detect.keytable import TableStats
from netids.detect.packets import protocol_name
from netids.detect.pipeline import Pipeline
from netids.detect.scored import ScoredBatch
from netids.store.sink import EventSink
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
        """Fold a batch into per-second buckets keyed by packet time (packets shed under
        overload count in the packet rate, not in the scores)."""
        ts, scores, anomalous = scored.packets.ts, scored.scores, scored.anomalous
        shed_ts = [x for x in (scored.unscored.ts if scored.unscored is not None else None,
                               scored.unread_ts) if x is not None and len(x)]
        if shed_ts:
            shed = sum(len(x) for x in shed_ts)
            ts = np.concatenate([ts, *shed_ts])
            scores = np.concatenate([scores, np.zeros(shed)])
            anomalous = np.concatenate([anomalous, np.zeros(shed, dtype=bool)])
        if len(ts) == 0:
            return
        second = np.floor(ts)
        keys, inverse = np.unique(second, return_inverse=True)
        counts = np.bincount(inverse, minlength=len(keys))
        peaks = np.full(len(keys), 0.0)
        np.maximum.at(peaks, inverse, scores.astype(np.float64))
        flagged = np.bincount(inverse, weights=anomalous, minlength=len(keys))
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
    packets: int = 0  # every packet handled, scored or shed
    shed: int = 0  # counted but not scored: the pipeline fell behind and scored a sample
    scored_share: float = 1.0  # share of the latest batch scored; < 1 while overloaded
    unread: int = 0  # shed without decoding (deep overload): in packets, not in tcp/udp/other
    conn_missed: int = 0  # packets left out of connection records (heavy overload)
    conn_folded: int = 0  # one-packet connections of floods counted, not stored
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
    adapt_scale: float = 1.0  # the threshold adapter's factor on raw errors (1: as trained)
    adapt_learned: int = 0  # clean packets the adapter learned from (detect/adaptive.py)
    protocols: dict[str, int] = field(default_factory=dict)
    timeline: Timeline = field(default_factory=Timeline)
    events: deque[EventUpdate] = field(default_factory=lambda: deque(maxlen=RECENT_EVENTS))
    store: StoreStats | None = None
    progress: Snapshot | None = None  # how far through the file analysed; None when live
    tables: list[TableStats] = field(default_factory=list)  # bounded state: size, evictions
    generation: int = 0  # increases on every change, so timers redraw only when needed


def overload_text(live: LiveState) -> str:
    """The dashboard's overload line: '' while every packet is scored.

    >>> overload_text(LiveState(running=True, packets=1000))
    ''
    >>> overload_text(LiveState(running=True, scored_share=0.125, shed=52_000))
    'scoring 12.5% of packets (overload): 52,000 counted, not scored'
    >>> overload_text(LiveState(running=False, scored_share=0.5, shed=7, unread=3))
    'overload: 7 packets were counted, not scored (3 not even decoded)'
    >>> overload_text(LiveState(running=True, scored_share=0.05, shed=950, conn_missed=950))
    'scoring 5% of packets (overload): 950 counted, not scored, 950 left out of connections'
    >>> overload_text(LiveState(running=True, conn_folded=48_211))
    'floods: 48,211 one-packet connections counted, not stored'
    """
    unread = f" ({live.unread:,} not even decoded)" if live.unread else ""
    if live.conn_missed:
        unread += f", {live.conn_missed:,} left out of connections"
    folded = (f"floods: {live.conn_folded:,} one-packet connections counted, not stored"
              if live.conn_folded else "")
    if live.running and live.scored_share < 1.0:
        text = (f"scoring {100 * live.scored_share:.3g}% of packets (overload): "
                f"{live.shed:,} counted, not scored{unread}")
    elif live.shed:
        text = f"overload: {live.shed:,} packets were counted, not scored{unread}"
    else:
        return folded
    return f"{text}; {folded}" if folded else text


def publish(live: LiveState, pipeline: Pipeline, scored: ScoredBatch | None,
            updates: list[EventUpdate], source: LiveSource | FileSource, sink: EventSink,
            store: StoreStats | None) -> None:
    """Fold one batch's results into ``live``: a handful of numpy reductions."""
    for u in updates:
        live.events.append(u)
    if scored is not None:
        live.timeline.add(scored)
        count_protocols(live.protocols, scored)
    s, cap = pipeline.stats, source.stats()
    live.packets, live.tcp, live.udp, live.other = s.packets, s.tcp, s.udp, s.other
    live.shed, live.unread = s.shed, s.unread
    live.anomalies, live.undecoded = s.anomalies + sink.behaviour_flagged, s.undecoded
    live.kernel_drops, live.queue_drops = cap.kernel_drops, cap.queue_drops
    live.packets_per_second, live.rate_mark = last_second_rate(
        live.rate_mark, time.monotonic(), s.packets, live.packets_per_second)
    live.session_events = sink.opened
    live.tables = sink.tables(pipeline)
    live.conn_missed = sink.conns.missed if sink.conns is not None else 0
    live.conn_folded = sink.fold.folded
    adapter = pipeline.adapter
    live.adapt_scale, live.adapt_learned = (adapter.scale, adapter.learned) if adapter \
        else (1.0, 0)
    live.progress = source.progress() if isinstance(source, FileSource) else None
    live.store = store
    live.generation += 1


def count_protocols(counts: dict[str, int], scored: ScoredBatch) -> None:
    ethertype, proto = scored.packets.ethertype, scored.packets.proto
    if scored.unscored is not None and len(scored.unscored):  # shed packets count here too
        ethertype = np.concatenate([ethertype, scored.unscored.ethertype])
        proto = np.concatenate([proto, scored.unscored.proto])
    pairs = ethertype.astype(np.int64) * 512 + proto + 1  # one number per pair (both may be -1)
    uniq, n = np.unique(pairs, return_counts=True)
    for pair, c in zip(uniq.tolist(), n.tolist(), strict=True):
        name = protocol_name(pair // 512, pair % 512 - 1)
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
