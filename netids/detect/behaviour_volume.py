"""Exfiltration and long connections: how much a host sends, and for how long it stays on.

*Exfiltration* follows StratosphereLinuxIPS (``modules/flow_alerts/conn.py``): the bytes a
source sent to one destination within an hour's window (its ``data_exfiltration_threshold``,
500 MB), or in one connection (``flow_upload_threshold``, 100 MB), never counting multicast,
broadcast or link-local destinations. The why gives the producer/consumer ratio, (sent -
received) / (sent + received): near 1 a host that only pushes, as exfiltration does.

*Long connections* follow RITA (``analysis/analysis.go``, ``default_config.hjson``): the
total duration of a pair's connections (source, destination, port, protocol) over a day,
open ones included, from 1 h (RITA's base) as low severity, and again as medium from 8 h
(RITA's medium); never high, as an IoT device's cloud session or a DHCP lease's chatter lasts
for days on any network. In-progress snapshots (every minute) count, so neither detector
waits for the connection to end.

A fixed number misfires where big uploads or long sessions are the network's normal (backups,
an IoT device's cloud session): :meth:`VolumeDetector.learn` keeps the servers that received
such uploads, and the services (port and protocol) held that long, in benign traffic out of
alerts (an IoT cloud's addresses change, its port does not), and raises a source's limit to
``learned_factor`` times the most it sent in an hour.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from netids.detect.behaviour_base import (
    BehaviourAlert,
    BoundedMap,
    is_group_address,
    size_text,
    span_text,
)
from netids.detect.conn_records import ConnRecord

Pair = tuple[str, str, int, str]  # source, destination, port, protocol
Server = tuple[str, int, str]  # destination, port, protocol


@dataclass(frozen=True, slots=True)
class VolumeConfig:
    """Thresholds of the exfiltration and long-connection detectors."""

    window: float = 3600.0  # Slips' time window: bytes are summed over an hour
    upload_bytes: int = 500_000_000  # sent to one destination in the window (Slips: 500 MB)
    flow_bytes: int = 100_000_000  # ... or in one connection (Slips: 100 MB)
    long_window: float = 86400.0  # a pair's connection time is summed over a day (RITA's)
    long_seconds: tuple[float, float] = (3600.0, 28800.0)  # low, then medium
    learned_factor: float = 2.0  # a learned source may send this many times its normal
    max_pairs: int = 16384  # pairs held (least recently seen go)
    uids_kept: int = 32  # connections held per pair (the largest), and carried by an alert
    base: float = 0.25  # evidence under this share of a limit scores 0 (and cannot alert)

    def __post_init__(self) -> None:
        assert 0 < self.flow_bytes <= self.upload_bytes
        assert 0 < self.long_seconds[0] < self.long_seconds[1]


@dataclass(slots=True)
class _Conn:
    ts: float
    end: float
    sent: int
    received: int


@dataclass(slots=True)
class _Pair:
    conns: dict[str, _Conn] = field(default_factory=dict)  # uid -> its latest state
    upload_alerted: int = 0  # bytes the last exfiltration alert reported
    long_alerted: int = -1  # the grade (index of long_seconds) last alerted


class VolumeDetector:
    """Bytes sent and time connected per pair.

    >>> from netids.detect.behaviour_base import record
    >>> d = VolumeDetector()
    >>> push = record(ts=0.0, uid="C1", resp_h="203.0.113.9", resp_p=443, conn_state="SF",
    ...               duration=900.0, orig_bytes=620_000_000, resp_bytes=4_000_000)
    >>> [(a.kind, a.severity, a.count) for a in d.observe(push)[0]]
    [('exfiltration', 'high', 620000000)]
    """

    def __init__(self, config: VolumeConfig | None = None) -> None:
        self.config = c = config or VolumeConfig()
        self.pairs: BoundedMap[Pair, _Pair] = BoundedMap(c.max_pairs, _Pair)
        self.normal: dict[str, int] = {}  # learned: the most a source sent in a window
        self.learned_servers: set[Server] = set()  # received big uploads
        self.learned_services: set[tuple[int, str]] = set()  # held long connections
        self.learned = False

    def learn(self, records: list[ConnRecord]) -> None:
        """Take each source's most sent in a window, and keep the servers that received big
        uploads or held long connections, from benign traffic (no alerts come out)."""
        quiet = VolumeDetector(self.config)
        for r in sorted(records, key=lambda r: r.ts):
            for alert in quiet.observe(r)[0]:
                if alert.kind == "exfiltration":
                    self.learned_servers.add((r.resp_h, r.resp_p, r.proto))
                else:
                    self.learned_services.add((r.resp_p, r.proto))
            pair = quiet.pairs.peek(_pair(r))
            if pair is not None:
                sent = quiet._sent(pair, r.ts)
                self.normal[r.orig_h] = max(self.normal.get(r.orig_h, 0), sent)
        self.learned = True

    def upload_limit(self, source: str, one: bool = False) -> int:
        """Bytes ``source`` may send to one destination in the window (with ``one``: in one
        connection): the configured limit, or ``learned_factor`` times its normal."""
        learned = int(self.normal.get(source, 0) * self.config.learned_factor)
        return max(self.config.flow_bytes if one else self.config.upload_bytes, learned)

    def observe(self, r: ConnRecord) -> tuple[list[BehaviourAlert], float]:
        """Count one record (a snapshot replaces its connection's earlier state): the alerts
        it completes (before suppression), and its pair's evidence as a share of the limit it
        is nearest to (1.0: an alert is due; 0.0 under a quarter of the way, as ordinary
        traffic is)."""
        if not (r.orig_bytes or r.duration) or r.proto == "icmp":
            return [], 0.0  # sent nothing and lasted no time (a failed attempt): no evidence
        if is_group_address(r.resp_h) or r.resp_h.startswith("fe80:"):
            return [], 0.0
        c = self.config
        pair = self.pairs.get(_pair(r))
        end = r.ts + (r.duration or 0.0)
        pair.conns[r.uid] = _Conn(r.ts, end, r.orig_bytes or 0, r.resp_bytes or 0)
        if len(pair.conns) == 1:  # most pairs: no sums to take
            sent, connected = r.orig_bytes or 0, end - r.ts
        else:
            self._forget(pair, end)
            sent = self._sent(pair, end)
            connected = sum(k.end - k.ts for k in pair.conns.values())
        share = max(sent / self.upload_limit(r.orig_h),
                    (r.orig_bytes or 0) / self.upload_limit(r.orig_h, one=True),
                    connected / c.long_seconds[0])
        if share < c.base:
            return [], 0.0
        upload = [] if (r.resp_h, r.resp_p, r.proto) in self.learned_servers else (
            self._upload(r, pair, sent))
        long = [] if (r.resp_p, r.proto) in self.learned_services else (
            self._long(r, pair, connected))
        return upload + long, share

    def _forget(self, pair: _Pair, now: float) -> None:
        """Drop connections past the day's window; keep the ``uids_kept`` largest."""
        old = [u for u, k in pair.conns.items() if k.end < now - self.config.long_window]
        for uid in old:
            del pair.conns[uid]
        if len(pair.conns) > self.config.uids_kept:
            smallest = min(pair.conns, key=lambda u: pair.conns[u].sent + pair.conns[u].end
                           - pair.conns[u].ts)
            del pair.conns[smallest]

    def _sent(self, pair: _Pair, now: float) -> int:
        return sum(k.sent for k in pair.conns.values() if k.end >= now - self.config.window)

    def _upload(self, r: ConnRecord, pair: _Pair, sent: int) -> list[BehaviourAlert]:
        c = self.config
        limit, one_limit = self.upload_limit(r.orig_h), self.upload_limit(r.orig_h, one=True)
        one = r.orig_bytes or 0
        if (sent < limit and one < one_limit) or sent < 2 * pair.upload_alerted:
            return []
        pair.upload_alerted = sent
        recent = [(u, k) for u, k in pair.conns.items() if k.end >= r.ts - c.window]
        received = sum(k.received for _, k in recent)
        ratio = (sent - received) / max(sent + received, 1)
        first = min(k.ts for _, k in recent)
        rule = (f"one connection sent {size_text(one)}, limit {size_text(one_limit)}"
                if sent < limit else f"limit {size_text(limit)} an hour")
        why = (f"{r.orig_h} sent {size_text(sent)} to {r.resp_h}:{r.resp_p} "
               f"({r.proto.upper()}) in {span_text(r.ts + (r.duration or 0.0) - first)}, "
               f"received {size_text(received)}: producer/consumer ratio {ratio:.2f} "
               f"({rule}); {self._normal_text(r.orig_h)}")
        severity = "high" if sent >= limit and ratio >= 0.4 else "medium"
        return [BehaviourAlert(
            "exfiltration", severity, r.orig_h, (f"{r.resp_h}:{r.resp_p}",), None, first,
            r.ts + (r.duration or 0.0), sent, tuple(u for u, _ in recent)[:c.uids_kept], why,
            f"exfiltration:{r.orig_h}:{r.resp_h}")]

    def _long(self, r: ConnRecord, pair: _Pair, connected: float) -> list[BehaviourAlert]:
        grade = sum(connected >= s for s in self.config.long_seconds) - 1
        if grade < 0 or grade <= pair.long_alerted:
            return []
        pair.long_alerted = grade
        first = min(k.ts for k in pair.conns.values())
        last = max(k.end for k in pair.conns.values())
        count = len(pair.conns)
        normal = ("services held this long in normal traffic are left out" if self.learned
                  else "no normal learned for this network")
        why = (f"{r.orig_h} was connected to {r.resp_h}:{r.resp_p} ({r.proto.upper()}) for "
               f"{span_text(connected)} in {count} connection{'s' if count > 1 else ''}"
               f"{' (one still open)' if r.in_progress else ''}: a long connection "
               f"(from {span_text(self.config.long_seconds[0])}, graver from "
               f"{span_text(self.config.long_seconds[1])}); "
               f"{normal}")
        return [BehaviourAlert(
            "long_connection", ("low", "medium")[grade], r.orig_h,
            (f"{r.resp_h}:{r.resp_p}",), None, first, last, int(connected),
            tuple(pair.conns)[:self.config.uids_kept], why,
            f"long:{r.orig_h}:{r.resp_h}:{r.resp_p}")]

    def _normal_text(self, source: str) -> str:
        if not self.learned:
            return "no normal learned for this network"
        return f"normal here is at most {size_text(self.normal.get(source, 0))} an hour"


def _pair(r: ConnRecord) -> Pair:
    return (r.orig_h, r.resp_h, r.resp_p, r.proto)
