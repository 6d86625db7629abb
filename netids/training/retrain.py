"""Capture-and-retrain: collect normal traffic from the running pipeline, then train on it.

The collector is a pipeline listener: it keeps the decoded packets and context features the
pipeline already computed (no second decode), bounded to ``max_packets``. Training runs the
same :func:`netids.training.train.train` as ``python app.py train``, off the event loop,
reporting each epoch to :class:`TrainingState` for the live loss curve
(:mod:`netids.training.background`, in a child process).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from netids.detect.dns import DnsRecord
from netids.detect.packets import PacketBatch
from netids.detect.scored import ScoredBatch
from netids.training.quality import Concern
from netids.training.train import TrainingCancelled, TrainingError, TrainReport

# review: trained but not active until a person accepts its concerns; declined: they did not
PHASES = ("idle", "capturing", "training", "review", "declined", "done", "failed")


@dataclass(slots=True)
class TrainingState:
    """What the training page shows."""

    phase: str = "idle"
    source: str = ""
    from_file: bool = False  # the source is a capture file (read, not captured)
    packets: int = 0  # normal packets collected so far
    history: list[tuple[int, float, float]] = field(default_factory=list)  # epoch, losses
    report: str = ""  # final summary in words
    error: str = ""  # why training failed; the previous model stays active
    model: str = ""  # name of the model it produced
    concerns: list[Concern] = field(default_factory=list)  # why the new model may be unreliable
    generation: int = 0

    def progress(self, epoch: int, train_loss: float, val_loss: float) -> None:
        """One epoch done: a point of the live loss curve."""
        self.history.append((epoch, float(train_loss), float(val_loss)))
        self.generation += 1


class TrafficCollector:
    """Keeps the packets and features of scored batches, up to ``max_packets``, and the DNS
    messages among them (what the DNS detectors learn with the model)."""

    def __init__(self, state: TrainingState, max_packets: int = 500_000) -> None:
        self.state = state
        self.max_packets = max_packets
        self._packets: list[PacketBatch] = []
        self._features: list[np.ndarray] = []
        self._dns: list[DnsRecord] = []
        self._count = 0

    def __call__(self, scored: ScoredBatch) -> None:
        room = self.max_packets - self._count
        if room <= 0:
            return
        take = min(room, len(scored))
        self._packets.append(scored.packets.take(slice(0, take)))
        self._features.append(scored.features[:take])
        first = scored.frames.first_index  # a record's index - first: its row in the batch
        self._dns += [r for r in scored.dns if 0 <= r.index - first < take]
        self._count += take
        self.state.packets = self._count
        self.state.generation += 1

    def data(self) -> tuple[PacketBatch, np.ndarray] | None:
        if not self._packets:
            return None
        return PacketBatch.concat(self._packets), np.concatenate(self._features)

    def dns_records(self) -> list[DnsRecord]:
        """The DNS queries and answers of the kept packets."""
        return list(self._dns)


def describe(report: TrainReport) -> str:
    """The final report in words: data, epochs, validation loss, threshold, false alarms,
    and any doubt about the data (see :func:`~netids.training.data.check_training_data`)."""
    metrics = report.checkpoint.metadata.get("metrics", {})
    threshold = report.checkpoint.threshold
    return (f"trained on {report.packets:,} packets in {report.seconds:.0f} s, "
            f"{report.epochs} epochs (best {report.best_epoch}"
            f"{', stopped early' if report.stopped_early else ''}), validation loss "
            f"{metrics.get('best_val_loss', float('nan')):.4f}; calibrated on "
            f"{metrics.get('calibration_packets', 0):,} held-back packets: threshold "
            f"{threshold:.4f}, estimated false-alarm rate {1.0 - threshold:.2%} of normal packets"
            + "".join(f"; warning: {text}" for text in report.warnings))


__all__ = ["PHASES", "TrafficCollector", "TrainingCancelled", "TrainingError", "TrainingState",
           "describe"]
