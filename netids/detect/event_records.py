"""What event aggregation hands on: the config of how packets merge, severities, and the
records (:class:`EventUpdate` with its :class:`Sample` packets) that storage, export and the UI
read."""

from __future__ import annotations

import math
from dataclasses import dataclass

SEVERITIES = ("normal", "suspicious", "anomalous")  # in rising order
EXACT_DISTINCT = 64  # sources/targets counted exactly per event; beyond, estimated
# What a table shows of an event at a threshold, in rising order: under the threshold its
# stored severity's lower two; at or past it, graded by how far past and by kind (see grade())
GRADES = ("normal", "suspicious", "low", "medium", "high", "critical")
GRADE_STEPS = (1.0, 3.0)  # nines past the threshold from which an event is a level higher
# kinds that name an attack pattern in themselves (netids.detect.explain's KIND_RULES); the
# "unusual ..." kinds say only that a field deviates
ATTACK_KINDS = frozenset({"ARP spoofing", "malformed packet", "bogus address", "port scan",
                          "host sweep", "reflection flood", "spoofed flood", "flood",
                          "target under flood"})
# the behaviour detectors' kinds (netids.detect.behaviour) as events name them; their level is
# their detector's severity, stored as a score (behaviour_score), whatever the threshold
BEHAVIOUR_KINDS = {"vertical_scan": "vertical scan", "horizontal_scan": "horizontal scan",
                   "scan": "host and port scan", "slow_scan": "slow scan",
                   "brute_force": "brute force", "login_after_guessing": "login after guessing",
                   "beacon": "beaconing", "exfiltration": "data exfiltration",
                   "long_connection": "long connection",
                   # the payload checks' (netids.detect.payload)
                   "web_attack": "web attack", "malware_download": "malware download",
                   "heartbleed": "heartbleed",
                   # the DNS detectors' (netids.detect.behaviour_dns)
                   "dns_tunnel": "DNS tunnelling", "nxdomain_burst": "NXDOMAIN burst"}
BEHAVIOUR_NINES = {"low": 4.0, "medium": 6.0, "high": 8.0, "critical": 10.0}

_BEHAVIOUR_NAMES = frozenset(BEHAVIOUR_KINDS.values())


@dataclass(frozen=True, slots=True)
class EventConfig:
    """How anomalous packets merge into events."""

    gap: float = 60.0  # seconds without a matching packet after which an event ends
    refold: float = 900.0  # ... yet a matching packet this soon after its last re-opens it
    max_duration: float = 3600.0  # a longer event is cut and a new one starts (rows stay current)
    max_sources: int = 16  # distinct sources of one target (same proto, kind) before they merge
    max_targets: int = 16  # distinct targets of one source (same proto, kind) before they merge
    max_pairs: int = 16  # distinct host pairs of one proto and kind (neither merged) before
    # further ones merge into one "many -> many" event (a flood spoofing both addresses)
    max_open: int = 1_000  # open events at most; past it new keys merge into "many -> many"
    fan_capacity: int = 1 << 16  # (address, proto, kind) fans tracked per direction at most
    top_sources: int = 8  # heaviest sources kept per event whose sources merged
    samples: int = 5  # sample packets kept per event, as raw bytes
    # Calibrated scores are the share of normal traffic scoring lower (netids.detect.calibration):
    # 0.999 means one normal packet in a thousand scores as high.
    suspicious_at: float = 0.5  # calibrated score from which an event is "suspicious"
    anomalous_at: float = 0.999  # calibrated score from which an event is "anomalous"

    def __post_init__(self) -> None:
        assert self.gap > 0 and self.max_duration >= self.gap and self.refold >= self.gap
        assert self.max_sources >= 1 and self.max_targets >= 1 and self.max_pairs >= 1
        assert self.samples >= 0
        assert 0.0 <= self.suspicious_at <= self.anomalous_at <= 1.0


def severity(score: float, config: EventConfig = EventConfig()) -> str:
    """Severity of a calibrated score: 'normal', 'suspicious' or 'anomalous'.

    >>> severity(0.2), severity(0.6), severity(0.9995)
    ('normal', 'suspicious', 'anomalous')
    """
    if score >= config.anomalous_at:
        return "anomalous"
    if score >= config.suspicious_at:
        return "suspicious"
    return "normal"


def nines(score: float) -> float:
    """``-log10(1 - score)``: how rare a calibrated score is in normal traffic, in powers of
    ten (3: one normal packet in a thousand scores as high), capped where a float runs out.

    >>> nines(0.999), nines(0.0), nines(1.0)
    (3.0, 0.0, 16.0)
    """
    return round(min(max(0.0, -math.log10(max(1.0 - score, 1e-16))), 16.0), 6)


def grade(score: float, threshold: float, kind: str,
          config: EventConfig = EventConfig()) -> str:
    """How serious an event is at ``threshold``, one of :data:`GRADES`.

    Under the threshold: 'normal' or 'suspicious' (from ``config.suspicious_at``). At or past
    it, by how far past in nines: under 1 nine (under 10 times rarer than the threshold) 'low',
    under 3 'medium', else 'high'; a kind that names an attack pattern (:data:`ATTACK_KINDS`)
    is one level higher ('critical' at most).

    >>> [grade(s, 0.999, "unusual size") for s in (0.2, 0.9, 0.999, 0.9995, 0.99995, 0.999999)]
    ['normal', 'suspicious', 'low', 'low', 'medium', 'high']
    >>> [grade(s, 0.999, "port scan") for s in (0.9, 0.9995, 0.99995, 0.999999)]
    ['suspicious', 'medium', 'high', 'critical']

    A behaviour kind's level is its detector's severity, read back from its score
    (:func:`behaviour_score`) at any threshold:

    >>> grade(behaviour_score("medium"), 0.99999, "brute force")
    'medium'
    """
    if kind in _BEHAVIOUR_NAMES:
        return max((name for name, n in BEHAVIOUR_NINES.items() if nines(score) >= n - 0.5),
                   key=GRADES.index, default="low")
    if score < threshold:
        return "suspicious" if score >= config.suspicious_at else "normal"
    past = nines(score) - nines(threshold)
    level = 2 + sum(past >= step for step in GRADE_STEPS) + (kind in ATTACK_KINDS)
    return GRADES[min(level, len(GRADES) - 1)]


def behaviour_score(severity: str) -> float:
    """The score a behaviour event of ``severity`` (low .. critical) is stored with: as rare
    as 4, 6, 8 or 10 nines, past any threshold the slider offers.

    >>> [nines(behaviour_score(s)) for s in ("low", "medium", "high", "critical")]
    [4.0, 6.0, 8.0, 10.0]
    """
    return 1.0 - 10.0 ** -BEHAVIOUR_NINES[severity]


def severities_at_least(name: str) -> tuple[str, ...]:
    """The severities at or above ``name``.

    >>> severities_at_least("suspicious")
    ('suspicious', 'anomalous')
    """
    return SEVERITIES[SEVERITIES.index(name) :]


@dataclass(frozen=True, slots=True)
class Sample:
    """One packet kept with its event, raw bytes included (for the pcap export)."""

    seq: int  # 0-based position among the event's samples
    ts: float  # seconds since the epoch
    data: bytes  # captured bytes of the frame
    wirelen: int
    linktype: int
    score: float
    summary: str  # one line like tcpdump's


@dataclass(frozen=True, slots=True)
class EventUpdate:
    """The whole current state of one event, plus the samples it gained since the last update."""

    id: str  # 32 hex digits, unique across sensors and runs
    first_seen: float  # seconds since the epoch (packet time)
    last_seen: float
    src: str  # address as text; "" when many sources merged
    dst: str  # "" when many targets merged
    src_port: int | None  # None when absent or not the same for every packet
    dst_port: int | None
    proto: str  # "TCP", "UDP", "ARP", ...
    kind: str  # kind of deviation, as the detector names it
    packets: int
    score_max: float
    score_mean: float
    severity: str  # one of SEVERITIES, from score_max
    explanation: str  # explanation of the highest-scoring packet
    threshold: float  # decision threshold when the top packet was scored
    src_count: int  # distinct sources (1 unless merged): exact up to EXACT_DISTINCT, then
    dst_count: int  # estimated (HyperLogLog, about 2 % error)
    new_samples: tuple[Sample, ...] = ()
    top_sources: tuple[tuple[str, int], ...] = ()  # heaviest (source, packets), when merged

    @property
    def reach(self) -> str:
        """Packets and distinct peers in words, approximate counts marked with '~'.

        >>> EventUpdate("0", 0, 1, "", "192.0.2.1", None, 80, "TCP", "flood", 48211, 1, 1,
        ...             "anomalous", "", 0.999, 47_912, 1).reach
        '48,211 packets from ~47,900 sources'
        >>> EventUpdate("0", 0, 1, "198.51.100.7", "", None, 80, "TCP", "flood", 90, 1, 1,
        ...             "anomalous", "", 0.999, 1, 30).reach
        '90 packets to 30 targets'
        """
        parts = [f"{self.packets:,} packet{'s' if self.packets != 1 else ''}"]
        if self.src_count > 1:
            parts.append(f"from {_about(self.src_count)} sources")
        if self.dst_count > 1:
            parts.append(f"to {_about(self.dst_count)} targets")
        return " ".join(parts)


def _about(count: int) -> str:
    """A count as text: exact ones as they are, estimates to three figures after a '~'."""
    if count <= EXACT_DISTINCT:
        return f"{count:,}"
    return f"~{round(count, 2 - len(str(count)) + 1):,}"
