"""Beaconing: one host calling another at a regular interval with alike requests (malware
checking in with its command and control server).

Anchor: RITA's beacon analysis (activecm/rita ``analysis/beacons.go``, defaults in
``config/config.go``), taken formula for formula. Per (source, destination, port) pair:

- *timestamp score* (``getTimestampScore``): the intervals between connections, their
  Bowley skew ``(Q1 + Q3 - 2 Q2) / (Q3 - Q1)`` (zero when ``Q3 - Q1 < 10`` or the median
  equals a quartile), scored ``1 - |skew|``, and their median absolute deviation, scored
  ``(median - MAD) / median`` (1 when the median is under 1); the mean of the two;
- *data size score* (``getDataSizeScore``): the same on the bytes the source sent (RITA's
  ``src_ip_bytes``), with a MAD score of 0 for a median under 1;
- *histogram score* (``getHistogramScore``): the connections counted in 24 bins over the
  window, scored by the larger of ``1 - coefficient of variation`` and the bimodal fit (the
  share of the non-empty bins in the two commonest heights, heights grouped by 5 % of the
  tallest, one outlier bin dropped, at least 11 non-empty bins);
- *duration score* (``getDurationScore``): with at least 6 non-empty bins, the larger of the
  share of the window the pair spans and the longest run of non-empty bins over 12;
- the *beacon score*: their mean (RITA's four weights of 0.25).

RITA scores a day: 24 one-hour bins, on whole-second timestamps (connections in the same
second are one interval of 0, left out). netids scores a sliding ``window`` (6 h by default)
or, before that much traffic was seen, the time since the first record, but at least
``min_window`` (10 min): the same 24 bins, each a 24th of that span. A burst of requests
within seconds (Kerberos, a page's DNS lookups) fills few bins of even the shortest span, so
it scores low on histogram and duration as it would over RITA's day; a beacon must have kept
going for about ``min_window`` before it can reach the threshold.

RITA's best-known false positives are always-on, constant-size services: NTP, DNS to the
resolver, MQTT keepalives, a camera's cloud check-in. :meth:`BeaconDetector.learn` scores
benign traffic and keeps every pair and every server (destination, port, protocol) that
beaconed there; those are not alerted afterwards.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from statistics import median

from netids.detect.behaviour_base import BehaviourAlert, BoundedMap, is_group_address, size_text
from netids.detect.conn_records import ConnRecord

Pair = tuple[str, str, int, str]  # source, destination, port, protocol
Server = tuple[str, int, str]  # destination, port, protocol


@dataclass(frozen=True, slots=True)
class BeaconConfig:
    """Thresholds of the beacon detector (RITA's defaults, its hours as 24ths of ``window``)."""

    window: float = 6 * 3600.0  # connections scored over this long (RITA: a day)
    min_window: float = 600.0  # ... and over at least this long, however new the input
    min_connections: int = 6  # in the window (RITA's unique_connection_threshold is 4)
    threshold: float = 0.9  # beacon score to alert at: RITA's "medium" (its "low" is 0.7)
    high: float = 0.95  # ... and to call it high severity (netids' own)
    base: float = 0.5  # RITA's "base": under it a pair is no beacon at all (a share of 0)
    bins: int = 24  # histogram bins over the window (RITA: the hours of a day)
    duration_min_bins: int = 6  # RITA's duration_min_hours_seen
    duration_ideal_bins: int = 12  # RITA's duration_consistency_ideal_hours_seen
    mode_sensitivity: float = 0.05  # RITA's histogram_mode_sensitivity
    bimodal_outliers: int = 1  # RITA's histogram_bimodal_outlier_removal
    bimodal_min_bins: int = 11  # RITA's histogram_bimodal_min_hours_seen
    max_pairs: int = 16384  # pairs held (least recently seen go)
    kept: int = 256  # connections held per pair (the newest)
    uids_kept: int = 32  # connection uids an alert carries
    rescore_share: int = 8  # a pair of n connections is scored again after n / 8 more

    def __post_init__(self) -> None:
        assert self.min_connections >= 4 and self.kept >= self.min_connections
        assert self.min_window > 0
        assert 0.0 <= self.base < self.threshold <= self.high <= 1.0


@dataclass(frozen=True, slots=True)
class BeaconScore:
    """RITA's four sub-scores of one pair and their mean, with the figures a why quotes."""

    score: float
    timestamp: float
    size: float
    histogram: float
    duration: float
    interval: float  # median interval between connections, s
    jitter: float  # its median absolute deviation, s
    bytes_sent: float  # median bytes the source sent per connection


@dataclass(slots=True)
class _Pair:
    seen: deque[tuple[float, int, str]] = field(default_factory=deque)  # ts, bytes, uid
    alerted: int = 0  # connections its last alert reported
    pending: int = 0  # connections since it was last scored
    dropped: float = -math.inf  # newest connection let go for room: the history starts after
    share: float = 0.0  # its last score as a share of the threshold


class BeaconDetector:
    """Beaconing per (source, destination, port, protocol), scored as RITA scores it.

    >>> from netids.detect.behaviour_base import record
    >>> d = BeaconDetector()
    >>> calls = [record(ts=60.0 * i, uid=f"C{i}", orig_h="10.0.0.9", resp_h="203.0.113.7",
    ...                 resp_p=443, conn_state="SF", orig_ip_bytes=312) for i in range(41)]
    >>> alerts = [a for r in calls for a in d.observe(r)[0]]
    >>> print(alerts[0].why)  # doctest: +NORMALIZE_WHITESPACE
    11 connections from 10.0.0.9 to 203.0.113.7:443 every 60 s ± 0 s, 312 B sent each:
    beaconing score 1.00 (timing 1.00, size 1.00, histogram 1.00, duration 1.00)
    >>> [a.count for a in alerts]  # again once the evidence doubled (scored every n/8)
    [11, 23]
    """

    def __init__(self, config: BeaconConfig | None = None) -> None:
        self.config = c = config or BeaconConfig()
        self.pairs: BoundedMap[Pair, _Pair] = BoundedMap(c.max_pairs, _Pair)
        self.start = math.inf  # first record seen: the window's start until it is full
        self.learned_pairs: set[Pair] = set()
        self.learned_servers: set[Server] = set()
        self.learned = False

    def learn(self, records: list[ConnRecord]) -> None:
        """Keep every pair and server that beacons in benign traffic (NTP, the resolver, an
        MQTT broker's keepalives): they are not alerted afterwards."""
        quiet = BeaconDetector(self.config)
        for r in sorted(records, key=lambda r: r.ts):
            if quiet.observe(r)[1] >= 1.0:
                self.learned_pairs.add(_pair(r))
                self.learned_servers.add((r.resp_h, r.resp_p, r.proto))
        self.learned = True

    def observe(self, r: ConnRecord) -> tuple[list[BehaviourAlert], float]:
        """Count one record: the alerts it completes (before suppression), and its pair's
        beacon score's way from RITA's base to the threshold (1.0: beaconing; 0.0 at or
        under the base, or not scored)."""
        c = self.config
        if r.in_progress or is_group_address(r.resp_h):
            return [], 0.0
        self.start = min(self.start, r.ts)
        key = _pair(r)
        pair = self.pairs.get(key)
        seen = pair.seen
        seen.append((float(math.floor(r.ts)), r.orig_ip_bytes, r.uid))  # RITA's whole seconds
        while seen and seen[0][0] < r.ts - c.window:
            seen.popleft()
        if len(seen) > c.kept:
            pair.dropped = seen.popleft()[0]
        if len(seen) < c.min_connections:
            pair.alerted, pair.pending, pair.share = 0, 0, 0.0
            return [], 0.0
        pair.pending += 1
        if pair.pending < max(1, len(seen) // c.rescore_share):  # a long history moves slowly
            return [], pair.share
        pair.pending = 0
        start = min(max(self.start, r.ts - c.window, pair.dropped), r.ts - c.min_window)
        score = beacon_score([s[0] for s in seen], [s[1] for s in seen], start, r.ts, c)
        pair.share = share = 0.0 if score is None else (
            max(score.score - c.base, 0.0) / (c.threshold - c.base))
        if score is None or share < 1.0 or len(seen) < 2 * pair.alerted or self._learned(key):
            return [], share
        pair.alerted = len(seen)
        return [self._alert(r, list(seen), score)], share

    def _learned(self, key: Pair) -> bool:
        return key in self.learned_pairs or key[1:] in self.learned_servers

    def _alert(self, r: ConnRecord, seen: list[tuple[float, int, str]],
               s: BeaconScore) -> BehaviourAlert:
        c = self.config
        severity = "high" if s.score >= c.high else "medium"
        why = (f"{len(seen)} connections from {r.orig_h} to {r.resp_h}:{r.resp_p} every "
               f"{_seconds(s.interval)} ± {_seconds(s.jitter)}, {size_text(s.bytes_sent)} sent "
               f"each: beaconing score {s.score:.2f} (timing {s.timestamp:.2f}, size "
               f"{s.size:.2f}, histogram {s.histogram:.2f}, duration {s.duration:.2f})")
        if self.learned:
            why += "; not among the services learned as periodic here"
        uids = tuple(u for _, _, u in seen[-c.uids_kept:])
        return BehaviourAlert("beacon", severity, r.orig_h, (f"{r.resp_h}:{r.resp_p}",),
                              r.service, seen[0][0], seen[-1][0], len(seen), uids, why,
                              f"beacon:{r.orig_h}:{r.resp_h}:{r.resp_p}:{r.proto}")


def beacon_score(times: list[float], sizes: list[int], start: float, end: float,
                 c: BeaconConfig) -> BeaconScore | None:
    """RITA's beacon score of one pair's connections (times in order) over [start, end], or
    None when there are fewer than 3 non-zero intervals (RITA's minimum).

    >>> c = BeaconConfig()
    >>> round(beacon_score([10.0 * i for i in range(24)], [300] * 24, 0.0, 240.0, c).score, 2)
    1.0
    """
    intervals = sorted(b - a for a, b in zip(times, times[1:], strict=False))
    nonzero = [i for i in intervals if i > 0]
    if len(nonzero) < 3 or end <= start:
        return None
    ts_score = _statistical_score(nonzero, default_mad=1.0)
    ds_score = _statistical_score(sorted(map(float, sizes)), default_mad=0.0)
    hist = _histogram(times, start, end, c.bins)
    hist_score = max(_cv_score(hist), _bimodal_score(hist, c))
    dur_score = _duration_score(hist, times[0], times[-1], start, end, c)
    total = round(0.25 * (ts_score + ds_score + hist_score + dur_score), 3)
    mid = median(nonzero)
    return BeaconScore(total, ts_score, ds_score, hist_score, dur_score, mid,
                       median(abs(i - mid) for i in nonzero), median(sizes))


def _statistical_score(values: list[float], default_mad: float) -> float:
    """RITA's ``calculateStatisticalScore``: the mean of the Bowley skew score and the MAD
    score of sorted ``values``.

    >>> _statistical_score([60.0, 60.0, 61.0, 59.0], 1.0), _statistical_score([1, 5, 90, 400], 1.0)
    (0.996, 0.215)
    """
    q1, q2, q3 = _quartiles(values)
    skew = 0.0
    if q3 - q1 >= 10 and q2 not in (q1, q3):
        skew = (q1 + q3 - 2 * q2) / (q3 - q1)
    mid = median(values)
    mad = median(abs(v - mid) for v in values)
    mad_score = max((mid - mad) / mid, 0.0) if mid >= 1 else default_mad
    return round((1.0 - abs(skew) + mad_score) / 2.0, 3)


def _quartiles(values: list[float]) -> tuple[float, float, float]:
    """Quartiles as RITA's library (montanaflynn/stats ``Quartile``) takes them: the medians
    of the lower and upper halves, the middle value left out of both when the count is odd.

    >>> _quartiles([1.0, 2.0, 3.0, 4.0, 5.0])
    (1.5, 3.0, 4.5)
    """
    half = len(values) // 2
    upper = values[half + len(values) % 2:]
    return median(values[:half] or values), median(values), median(upper or values)


def _histogram(times: list[float], start: float, end: float, bins: int) -> list[int]:
    """Connections per bin, ``bins`` equal bins over [start, end] (the last one closed)."""
    counts = [0] * bins
    width = (end - start) / bins
    for t in times:
        if t >= start:
            counts[min(int((t - start) / width), bins - 1)] += 1
    return counts


def _cv_score(hist: list[int]) -> float:
    """RITA's ``calculateCoefficientOfVariationScore``: 1 - sd/mean of the bin counts, at
    least 0."""
    mean = sum(hist) / len(hist)
    if mean <= 0:
        return 0.0
    sd = math.sqrt(sum((h - mean) ** 2 for h in hist) / len(hist))
    return max(round(1.0 - sd / mean, 3), 0.0)


def _bimodal_score(hist: list[int], c: BeaconConfig) -> float:
    """RITA's ``calculateBimodalFitScore``: the share of non-empty bins whose heights (in
    groups of ``mode_sensitivity`` of the tallest) are the two commonest."""
    bars = [h for h in hist if h > 0]
    if len(bars) < c.bimodal_min_bins:
        return 0.0
    size = math.ceil(max(bars) * c.mode_sensitivity)
    groups: dict[int, int] = {}
    for h in bars:
        groups[h // size] = groups.get(h // size, 0) + 1
    top = sorted(groups.values(), reverse=True)[:2]
    return min(round(sum(top) / max(len(bars) - c.bimodal_outliers, 1), 3), 1.0)


def _duration_score(hist: list[int], first: float, last: float, start: float, end: float,
                    c: BeaconConfig) -> float:
    """RITA's ``getDurationScore``: with enough non-empty bins, the larger of the share of
    the window spanned and the longest run of non-empty bins (wrapping) over the ideal."""
    if sum(h > 0 for h in hist) < c.duration_min_bins or last <= first:
        return 0.0
    coverage = min(math.ceil((last - first) / (end - start) * 1000) / 1000, 1.0)
    run = longest = 0
    for h in hist + hist:
        run = run + 1 if h > 0 else 0
        longest = max(longest, run)
    consistency = min(math.ceil(min(longest, len(hist)) / c.duration_ideal_bins * 1000) / 1000,
                      1.0)
    return max(coverage, consistency)


def _pair(r: ConnRecord) -> Pair:
    return (r.orig_h, r.resp_h, r.resp_p, r.proto)


def _seconds(value: float) -> str:
    """An interval in an alert's words: whole seconds, or tenths under 10 s."""
    return f"{value:.1f} s" if value < 10 and value != int(value) else f"{value:.0f} s"
