"""Scans, slow ones too: failed connections per scanner, counted as unique (host, port) pairs.

The logic and numbers are ncsa/bro-simple-scan's (``scripts/scan.zeek``): a scanner is a
source with failed connections to ``threshold`` (25) unique (host, port) pairs, or to
``knock_threshold`` (20) hosts on one port ("knock-knock"), its state kept until it has been
quiet for ``idle`` (15 min: ``scan_timeout``, Zeek's ``&read_expire``). The alert names the
shape as simple-scan's ``analyze_unique_hostports`` does: one port on many hosts is a
horizontal scan (Zeek's Address_Scan), many ports on one host a vertical scan (Port_Scan),
else a scan of hosts and ports (Random_Scan); StratosphereLinuxIPS splits its horizontal and
vertical port-scan modules (``modules/network_discovery``) the same way, on flows that were
not established.

A scanner slower than one failure per 15 min never gathers 25 in the first tier. A second
tier keeps, per source, a :class:`~netids.detect.sketches.DistinctCount` of its failed
(host, port) pairs for ``slow_window`` (24 h from its first failure, Zeek's
``&create_expire``), and raises a ``slow_scan`` when that count passes ``slow_threshold``.

What counts as failed (:func:`failed_attempt`) widens simple-scan's ``S``/``Sr`` histories to
what nmap's other scans leave in conn.log: no answer (S0, SH, OTH without a reply), refused
(REJ, RSTOS0, RSTRH, SHR), opened and reset with no data either way (a SYN scan of an open
port), UDP without a reply, ICMP echo without a reply (a ping sweep). Multicast and
broadcast destinations never count. Where a fixed threshold misfires, :meth:`ScanDetector.learn`
takes each source's normal from benign traffic: a monitoring host that fails against 40
(host, port) pairs in normal hours gets twice that before it is called a scanner.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from netids.detect.behaviour_base import (
    BehaviourAlert,
    BoundedMap,
    Distinct,
    is_group_address,
    key_hash,
    span_text,
)
from netids.detect.conn_records import ConnRecord

_NO_REPLY = frozenset({"S0", "SH", "OTH"})
_REFUSED = frozenset({"REJ", "RSTOS0", "RSTRH", "SHR"})


@dataclass(frozen=True, slots=True)
class ScanConfig:
    """Thresholds of the scan detector; defaults are bro-simple-scan's."""

    threshold: int = 25  # unique failed (host, port) pairs: scan_threshold
    knock_threshold: int = 20  # unique hosts failed on one port: knockknock_threshold
    idle: float = 900.0  # a scanner's state survives this long without failures: scan_timeout
    slow_window: float = 86400.0  # the slow tier counts a source's failures for this long
    slow_threshold: int = 25  # unique failed (host, port) pairs in slow_window
    learned_factor: float = 2.0  # a learned source may fail this many times its normal
    max_scanners: int = 8192  # sources held in the 15-min tier (least recently failed go)
    max_slow: int = 4096  # sources held in the 24 h tier (a DistinctCount each, <= 2 KiB)
    sample: int = 32  # failed pairs held exactly per source: the targets and the shape
    slow_sample: int = 16  # ... in the 24 h tier (the targets a slow-scan alert names)
    uids_kept: int = 32  # connection uids an alert carries

    def __post_init__(self) -> None:
        assert self.threshold >= 2 and self.knock_threshold >= 2 and self.slow_threshold >= 2
        assert self.sample >= max(self.threshold, self.knock_threshold)


def failed_attempt(r: ConnRecord) -> bool:
    """Whether a connection record is a failed attempt a scanner leaves behind.

    >>> from netids.detect.behaviour_base import record
    >>> failed_attempt(record(conn_state="S0")), failed_attempt(record(conn_state="REJ"))
    (True, True)
    >>> failed_attempt(record(conn_state="RSTO", history="ShR"))  # SYN scan, open port
    True
    >>> failed_attempt(record(conn_state="SF", orig_bytes=10, resp_bytes=90))
    False
    """
    if r.in_progress or is_group_address(r.resp_h):
        return False
    if r.proto == "icmp":
        return r.orig_p in (8, 128) and r.resp_pkts == 0  # echo request, no reply
    if r.proto == "udp":
        return r.resp_pkts == 0
    if r.conn_state in _REFUSED:
        return True
    if r.conn_state in _NO_REPLY:
        return not r.resp_bytes
    if r.conn_state in ("RSTO", "RSTR"):
        return not r.orig_bytes and not r.resp_bytes
    return False


@dataclass(slots=True)
class _Scanner:
    """One source's failures in the 15-min tier."""

    first: float = np.inf
    last: float = -np.inf
    pairs: set[tuple[str, int, str]] = field(default_factory=set)  # exact, up to sample
    per_port: Counter[tuple[int, str]] = field(default_factory=Counter)  # hosts in pairs
    total: Distinct = field(default_factory=Distinct)  # all of them
    uids: list[str] = field(default_factory=list)
    alerted: int = 0  # the count its last alert reported (0: none yet)


@dataclass(slots=True)
class _Slow:
    """One source's failures in the 24 h tier."""

    first: float = np.inf
    last: float = -np.inf
    total: Distinct = field(default_factory=Distinct)
    pairs: set[tuple[str, int, str]] = field(default_factory=set)
    uids: list[str] = field(default_factory=list)
    burst: int = 0  # the most it gathered in the 15-min tier
    alerted: bool = False


class ScanDetector:
    """Scanners among the sources of failed connections, in two tiers (15 min idle, 24 h).

    >>> from netids.detect.behaviour_base import record
    >>> d = ScanDetector()
    >>> alerts = [a for p in range(30)
    ...           for a in d.observe(record(ts=p, resp_p=p + 1, conn_state="REJ"))[0]]
    >>> [(a.kind, a.count, a.targets) for a in alerts]
    [('vertical_scan', 25, ('10.0.0.2',))]
    """

    def __init__(self, config: ScanConfig | None = None) -> None:
        self.config = c = config or ScanConfig()
        self.fast: BoundedMap[str, _Scanner] = BoundedMap(c.max_scanners, _Scanner)
        self.slow: BoundedMap[str, _Slow] = BoundedMap(c.max_slow, _Slow)
        self.normal: dict[str, int] = {}  # learned: a source's most failed pairs in 15 min
        self.normal_slow: dict[str, int] = {}  # ... and in 24 h
        self.normal_max = 0  # ... and the most of any source
        self.learned = False

    def learn(self, records: list[ConnRecord]) -> None:
        """Take each source's normal failures from benign traffic (no alerts come out)."""
        quiet = ScanDetector(self.config)
        for r in sorted(records, key=lambda r: r.ts):
            quiet.score(r)
            s, slow = quiet.fast.peek(r.orig_h), quiet.slow.peek(r.orig_h)
            if s is not None:
                self.normal[r.orig_h] = max(self.normal.get(r.orig_h, 0), s.total.estimate)
            if slow is not None:
                self.normal_slow[r.orig_h] = max(self.normal_slow.get(r.orig_h, 0),
                                                 slow.total.estimate)
        self.normal_max = max(self.normal.values(), default=0)
        self.learned = True

    def threshold(self, source: str, slow: bool = False) -> int:
        """Failed pairs that make ``source`` a scanner (in 15 min, or with ``slow`` in 24 h):
        the configured number, or twice the source's learned normal if that is more."""
        c = self.config
        normal = (self.normal_slow if slow else self.normal).get(source, 0)
        learned = int(np.ceil(normal * c.learned_factor))
        return max(c.slow_threshold if slow else c.threshold, learned)

    def observe(self, r: ConnRecord) -> tuple[list[BehaviourAlert], float]:
        """Count one record: the alerts it completes (before suppression), and its score."""
        score = self.score(r)
        return (self._check(r.orig_h) if score > 0.0 else []), score

    def score(self, r: ConnRecord) -> float:
        """Count one record; its source's evidence after it, as a share of the threshold
        (1.0: a scanner), or 0.0 if the record is no failed attempt."""
        if not failed_attempt(r):
            return 0.0
        c = self.config
        s = self.fast.get(r.orig_h)
        if r.ts - s.last > c.idle:  # quiet for 15 min: simple-scan's read_expire forgets it
            self._remember_burst(r.orig_h, s)
            s = _Scanner()
            self.fast.items[r.orig_h] = s
        pair = (r.resp_h, r.resp_p, r.proto)
        h = key_hash(*pair)
        s.first, s.last = min(s.first, r.ts), max(s.last, r.ts)
        if len(s.pairs) < c.sample and pair not in s.pairs:
            s.pairs.add(pair)
            s.per_port[pair[1:]] += 1
        before = s.total.estimate
        s.total.add(h)
        if s.total.estimate > before and len(s.uids) < c.uids_kept:
            s.uids.append(r.uid)
        slow = self.slow.get(r.orig_h)
        if r.ts - slow.first > c.slow_window:  # 24 h from its first failure: start again
            slow = _Slow()
            self.slow.items[r.orig_h] = slow
        slow.first, slow.last = min(slow.first, r.ts), max(slow.last, r.ts)
        before = slow.total.estimate
        slow.total.add(h)
        if slow.total.estimate > before and len(slow.uids) < c.uids_kept:
            slow.uids.append(r.uid)
        if len(slow.pairs) < c.slow_sample:
            slow.pairs.add(pair)
        return s.total.estimate / self.threshold(r.orig_h)

    def _remember_burst(self, source: str, s: _Scanner) -> None:
        slow = self.slow.peek(source)
        if slow is not None:
            slow.burst = max(slow.burst, s.total.estimate)
            slow.alerted |= s.alerted > 0

    def _check(self, source: str) -> list[BehaviourAlert]:
        c = self.config
        s = self.fast.get(source)
        count, limit = s.total.estimate, self.threshold(source)
        knock = max(s.per_port.values(), default=0) >= max(c.knock_threshold, limit * 4 // 5)
        if (count >= limit or knock) and count >= 2 * s.alerted:
            s.alerted = count
            slow = self.slow.peek(source)
            if slow is not None:
                slow.alerted = True
            return [self._alert(source, s, count, limit, knock)]
        slow = self.slow.peek(source)
        if slow is not None and not slow.alerted and s.alerted == 0 and (
                slow.total.estimate >= self.threshold(source, slow=True)):
            slow.alerted = True
            return [self._slow_alert(source, slow, s.total.estimate)]
        return []

    def _alert(self, source: str, s: _Scanner, count: int, limit: int,
               knock: bool) -> BehaviourAlert:
        kind, targets, shape = scan_shape(s.pairs, count)
        severity = "high" if count >= 4 * limit else "medium"
        normal = self._normal_text(source)
        rule = (f"{max(s.per_port.values())} hosts on one port, knock-knock limit "
                f"{self.config.knock_threshold}" if knock and count < limit else f"limit {limit}")
        why = (f"{source} failed to connect to {shape} in {span_text(s.last - s.first)} "
               f"(no answer or refused; {rule}): {kind.replace('_', ' ')}; {normal}")
        return BehaviourAlert(kind, severity, source, targets, None, s.first, s.last, count,
                              tuple(s.uids), why, f"scan:{source}")

    def _slow_alert(self, source: str, slow: _Slow, now_burst: int) -> BehaviourAlert:
        _, targets, shape = scan_shape(slow.pairs, slow.total.estimate)
        burst = max(slow.burst, now_burst)
        why = (f"{source} failed to connect to {shape} over {span_text(slow.last - slow.first)}"
               f", never more than {burst} within 15 min of each other: a slow scan, under "
               f"the {self.threshold(source)}-in-15-min limit; {self._normal_text(source)}")
        return BehaviourAlert("slow_scan", "medium", source, targets, None, slow.first,
                              slow.last, slow.total.estimate, tuple(slow.uids), why,
                              f"scan:{source}")

    def _normal_text(self, source: str) -> str:
        if not self.learned:
            return "no normal learned for this network"
        return (f"normal here is at most {self.normal.get(source, 0)} from this host and "
                f"{self.normal_max} from any host")


def scan_shape(pairs: set[tuple[str, int, str]], count: int) -> tuple[str, tuple[str, ...], str]:
    """The kind, the targets (most hit first, at most 5) and words for a scanner's failed
    pairs, as bro-simple-scan's ``analyze_unique_hostports`` names them.

    >>> scan_shape({("10.0.0.2", p, "tcp") for p in range(30)}, 30)[::2]
    ('vertical_scan', '30 ports on 10.0.0.2')
    >>> scan_shape({(f"10.0.0.{h}", 22, "tcp") for h in range(30)}, 30)[::2]
    ('horizontal_scan', '30 hosts on tcp port 22')
    """
    ordered = sorted(pairs)  # a set's order changes with every run's string hashing: ties
    # among the most hit hosts, and so the alert's targets and key, must not
    hosts = Counter(p[0] for p in ordered)
    ports = Counter(f"{p[2]} port {p[1]}" if p[2] != "icmp" else "ICMP echo" for p in ordered)
    more = "" if count <= len(pairs) else "at least "
    if len(ports) == 1:
        (port,) = ports
        return ("horizontal_scan", tuple(h for h, _ in hosts.most_common(5)),
                f"{more}{count} hosts on {port}")
    if len(hosts) == 1:
        (host,) = hosts
        return "vertical_scan", (host,), f"{more}{count} ports on {host}"
    if len(ports) <= 5:
        return ("horizontal_scan", tuple(h for h, _ in hosts.most_common(5)),
                f"{more}{count} host/port pairs ({len(hosts)} hosts on {', '.join(sorted(ports))})")
    if len(hosts) <= 5:
        return ("vertical_scan", tuple(sorted(hosts)),
                f"{more}{count} host/port pairs ({len(ports)} ports on {', '.join(sorted(hosts))})")
    return ("scan", tuple(h for h, _ in hosts.most_common(5)),
            f"{more}{count} host/port pairs ({len(hosts)} hosts, {len(ports)} ports)")

