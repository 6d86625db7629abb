"""The per-batch pipeline: decode, context features, score, classify, explain.

Pure apart from the model call: it takes a :class:`FrameBatch` and returns a
:class:`ScoredBatch`. Live capture, the ``score`` command and the UI's file analysis all run
batches through the same :class:`Pipeline`, so a capture file gives the same verdicts as the
traffic it recorded. Event aggregation and storage sit downstream of it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from netids.context import ContextConfig, ContextFeatures
from netids.decode import decode
from netids.detector import Detector
from netids.frames import FrameBatch
from netids.packets import FLAG_L3
from netids.scored import ScoredBatch


@dataclass(slots=True)
class PipelineStats:
    """Running totals, read by the UI and the end-of-run summary."""

    packets: int = 0
    undecoded: int = 0  # frames with no network layer read (unsupported link, truncated)
    anomalies: int = 0
    tcp: int = 0
    udp: int = 0
    other: int = 0


class Pipeline:
    """Scores consecutive batches of one traffic stream (state carries across batches)."""

    def __init__(
        self,
        detector: Detector,
        *,
        threshold: float | None = None,
        context: ContextConfig | None = None,
    ) -> None:
        self.detector = detector
        self.context = ContextFeatures(context or ContextConfig())
        self.threshold = detector.threshold if threshold is None else float(threshold)
        self.stats = PipelineStats()

    def process(self, frames: FrameBatch) -> ScoredBatch:
        """Decode, featurise and score one batch, in stream order."""
        packets = decode(frames)
        features = self.context.update(packets)
        scores = self.detector.score_batch(packets, features)
        anomalous = self.detector.policy(self.threshold).classify(scores.scores)
        index = np.flatnonzero(anomalous)
        kinds, explanations = self.detector.explain(packets, features, scores, index)
        self._count(packets.proto, packets.status, len(index))
        return ScoredBatch(
            frames=frames,
            packets=packets,
            features=features,
            scores=scores.scores,
            threshold=self.threshold,
            anomalous=anomalous,
            kinds=kinds,
            explanations=explanations,
        )

    def _count(self, proto: np.ndarray, status: np.ndarray, anomalies: int) -> None:
        s = self.stats
        tcp, udp = int(np.count_nonzero(proto == 6)), int(np.count_nonzero(proto == 17))
        s.packets += len(proto)
        s.tcp += tcp
        s.udp += udp
        s.other += len(proto) - tcp - udp
        s.undecoded += int(np.count_nonzero((status & FLAG_L3) == 0))
        s.anomalies += anomalies
