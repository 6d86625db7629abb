"""What event aggregation hands on: the config of how packets merge, severities, and the
records (:class:`EventUpdate` with its :class:`Sample` packets) that storage, export and the UI
read."""

from __future__ import annotations

from dataclasses import dataclass

SEVERITIES = ("normal", "suspicious", "anomalous")  # in rising order
EXACT_DISTINCT = 64  # sources/targets counted exactly per event; beyond, estimated


@dataclass(frozen=True, slots=True)
class EventConfig:
    """How anomalous packets merge into events."""

    gap: float = 60.0  # seconds without a matching packet after which an event ends
    max_duration: float = 3600.0  # a longer event is cut and a new one starts (rows stay current)
    max_sources: int = 16  # distinct sources of one target (same proto, kind) before they merge
    max_targets: int = 16  # distinct targets of one source (same proto, kind) before they merge
    max_open: int = 1_000  # open events at most; past it new keys merge into "many -> many"
    fan_capacity: int = 1 << 16  # (address, proto, kind) fans tracked per direction at most
    top_sources: int = 8  # heaviest sources kept per event whose sources merged
    samples: int = 5  # sample packets kept per event, as raw bytes
    # Calibrated scores are the share of normal traffic scoring lower (netids.detect.calibration):
    # 0.999 means one normal packet in a thousand scores as high.
    suspicious_at: float = 0.5  # calibrated score from which an event is "suspicious"
    anomalous_at: float = 0.999  # calibrated score from which an event is "anomalous"

    def __post_init__(self) -> None:
        assert self.gap > 0 and self.max_duration >= self.gap
        assert self.max_sources >= 1 and self.max_targets >= 1 and self.samples >= 0
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
