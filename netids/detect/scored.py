"""What the pipeline hands on after scoring a batch: the contract between detection, event
aggregation, storage and the UI."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from netids.detect.dns import DnsRecord
from netids.detect.frames import FrameBatch
from netids.detect.packets import PacketBatch
from netids.detect.payload import PayloadFinding


@dataclass(frozen=True, slots=True)
class Verdicts:
    """The model's side of a :class:`ScoredBatch`: small and picklable, so a batch can be
    judged in another process than the one holding its frames."""

    scores: np.ndarray  # float64 [n], calibrated 0..1, higher is more anomalous
    anomalous: np.ndarray  # bool [n], scores >= threshold
    kinds: list[str]  # one per anomalous packet, in the order of np.flatnonzero(anomalous)
    explanations: list[str]  # likewise
    nines: np.ndarray  # float64 [n], -log10(1 - score): orders the tail where scores tie
    raw: np.ndarray | None = None  # float32 [n], uncalibrated (what the threshold adapter learns)

    def __len__(self) -> int:
        return len(self.scores)


@dataclass(frozen=True, slots=True)
class ScoredBatch:
    """One pipeline batch after decoding, context features and scoring.

    ``kinds`` and ``explanations`` have one entry per anomalous packet, in the order of
    ``np.flatnonzero(anomalous)``.
    """

    frames: FrameBatch
    packets: PacketBatch
    features: np.ndarray  # float32 [n, F], context features in context.FEATURE_NAMES order
    scores: np.ndarray  # float64 [n], calibrated 0..1, higher is more anomalous
    threshold: float
    anomalous: np.ndarray  # bool [n], scores >= threshold
    kinds: list[str]  # short kind of deviation per anomalous packet ("port scan", "flood", ...)
    explanations: list[str]  # plain words per anomalous packet ("480 SYN/s from ..., normal is 2")
    unscored: PacketBatch | None = None  # shed under overload: decoded and counted, not scored
    unread_ts: np.ndarray | None = None  # shed without decoding (deep overload): arrival times
    findings: tuple[PayloadFinding, ...] = ()  # what the payload checks found (scored rows)
    by_behaviour: np.ndarray | None = None  # bool [n]: anomalous through its connection's
    # behaviour score alone (netids.detect.packet_behaviour); None: no behaviour looked up
    dns: tuple[DnsRecord, ...] = ()  # the DNS queries and responses of the scored rows

    def __len__(self) -> int:
        return len(self.scores)

    @property
    def anomaly_index(self) -> np.ndarray:
        return np.flatnonzero(self.anomalous)
