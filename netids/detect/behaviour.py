"""Behaviour detectors on connection records: one object the pipeline feeds.

:class:`BehaviourDetectors` takes the :class:`~netids.detect.conn_records.ConnRecord` records
the connection tracker emits and returns :class:`~netids.detect.behaviour_base.BehaviourAlert`
alerts: scans, slow scans (:mod:`netids.detect.behaviour_scan`), brute force
(:mod:`netids.detect.behaviour_brute`), beaconing (:mod:`netids.detect.behaviour_beacon`),
exfiltration and long connections (:mod:`netids.detect.behaviour_volume`), one alert per
key per hour unless it escalates.
Time is packet time (the records' own and ``now``), so a capture file gives what live capture
would. ``learn`` takes the network's normal from benign records before detection starts.

    detectors = BehaviourDetectors()
    detectors.learn(training_records)             # optional: this network's normal
    for batch in batches:
        alerts = detectors.update(tracker.update(batch), now=tracker.now)
"""

from __future__ import annotations

from dataclasses import dataclass, field

from netids.detect.behaviour_base import BehaviourAlert, Suppressor, in_order
from netids.detect.behaviour_beacon import BeaconConfig, BeaconDetector
from netids.detect.behaviour_brute import BruteConfig, BruteForceDetector
from netids.detect.behaviour_evidence import BehaviourEvidence, EvidenceConfig
from netids.detect.behaviour_scan import ScanConfig, ScanDetector
from netids.detect.behaviour_volume import VolumeConfig, VolumeDetector
from netids.detect.conn_records import ConnRecord


@dataclass(frozen=True, slots=True)
class BehaviourConfig:
    """The detectors' thresholds, and suppression."""

    scan: ScanConfig = field(default_factory=ScanConfig)
    brute: BruteConfig = field(default_factory=BruteConfig)
    beacon: BeaconConfig = field(default_factory=BeaconConfig)
    volume: VolumeConfig = field(default_factory=VolumeConfig)
    suppress_for: float = 3600.0  # one alert per key this long (Zeek's notice suppression)
    escalation: float = 10.0  # ... unless its evidence grew tenfold (Slips' log10 steps), or
    # its severity rose


@dataclass(frozen=True, slots=True)
class BehaviourResult:
    """What one update found: the alerts that go out, and each record's behaviour score (the
    largest of its scanner's, its guesser's and its pair's beaconing evidence as a share of
    their thresholds: 1.0 is where an alert is due), in the order the records were given."""

    alerts: list[BehaviourAlert]
    scores: list[float]


class BehaviourDetectors:
    """Scans, brute force and beaconing on connection records, with suppression.

    >>> from netids.detect.behaviour_base import record
    >>> d = BehaviourDetectors()
    >>> probes = [record(ts=60.0 * p, uid=f"C{p}", resp_p=p) for p in range(1, 41)]
    >>> [(a.kind, a.count) for a in d.update(probes, now=2400.0)]
    [('vertical_scan', 25)]
    >>> d.update([record(ts=2500.0, resp_p=99)], now=2500.0)  # same scanner: suppressed
    []
    """

    def __init__(self, config: BehaviourConfig | None = None) -> None:
        self.config = c = config or BehaviourConfig()
        self.scans = ScanDetector(c.scan)
        self.brute = BruteForceDetector(c.brute)
        self.beacons = BeaconDetector(c.beacon)
        self.volume = VolumeDetector(c.volume)
        self.suppressor = Suppressor(c.suppress_for, c.escalation)
        self.now = float("-inf")
        # each key's latest share, for the packets' scores (behaviour_evidence.py)
        self.evidence = BehaviourEvidence(EvidenceConfig(
            c.scan.idle, c.brute.window, c.beacon.window,
            c.scan.max_scanners + c.brute.max_keys + c.beacon.max_pairs))

    def learn(self, records: list[ConnRecord]) -> None:
        """Learn this network's normal from records of benign traffic (see each detector)."""
        self.scans.learn(records)
        self.brute.learn(records)
        self.beacons.learn(records)
        self.volume.learn(records)

    def update(self, records: list[ConnRecord], now: float) -> list[BehaviourAlert]:
        """Count records (any order; an in-progress snapshot is counted by its final record,
        but may reveal a login after guessing); the alerts due."""
        return self.observe(records, now).alerts

    def observe(self, records: list[ConnRecord], now: float) -> BehaviourResult:
        """:meth:`update`, with each record's behaviour score."""
        self.now = max(self.now, now)
        scores = [0.0] * len(records)
        found: list[BehaviourAlert] = []
        for i in sorted(range(len(records)), key=lambda i: in_order(records[i])):
            r = records[i]
            volume_alerts, volume_score = self.volume.observe(r)  # snapshots count here
            if r.in_progress:  # counted when it ends; only a login after guessing is due now
                found += self.brute.observe(r)[0] + volume_alerts
                continue
            scan_alerts, scan_score = self.scans.observe(r)
            brute_alerts, brute_score = self.brute.observe(r)
            beacon_alerts, beacon_score = self.beacons.observe(r)
            found += scan_alerts + brute_alerts + beacon_alerts + volume_alerts
            scores[i] = max(scan_score, brute_score, beacon_score, volume_score)
            self.evidence.note(r, scan_score, brute_score, beacon_score, self.now)
        alerts = [a for a in found
                  if self.suppressor.allow(a.key, a.last, a.severity, a.count)]
        return BehaviourResult(alerts, scores)
