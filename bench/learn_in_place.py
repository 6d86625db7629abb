"""``score --learn`` against the shipped model: what each flags on the scored part of benign
captures at its own threshold (see docs/drift.md, "Analysing a capture of an unfamiliar
network").

    .venv/bin/python bench/learn_in_place.py            # every case below
    .venv/bin/python bench/learn_in_place.py --epochs 3 # quicker, less trained

For each case, the learned model is made exactly as ``score CAPTURE --learn SECONDS`` makes
it (:func:`netids.training.learn.learn_start`) and scores the rest of the capture with the
context warm from the learning part; the shipped model scores the whole capture the way
``score`` does, and only its rows past the same cut are counted (its context is warm too).
Counted: normal packets only (all of a benign capture; label 0 of a labelled mix). Captures
come from ``NETIDS_SHARED_DATA`` (default ``../shared/data``).
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from netids.capture.pcapfile import read_batches  # noqa: E402
from netids.config import DEFAULT_MODEL  # noqa: E402
from netids.detect.pipeline import Pipeline  # noqa: E402
from netids.training.checkpoint import load_detector  # noqa: E402
from netids.training.learn import learn_start  # noqa: E402
from netids.training.train import TrainConfig  # noqa: E402

# capture (under the shared data folder), seconds learned: about 1.1 x the time its first
# MIN_PACKETS packets take, leaving the rest to score
CASES = [
    ("benign/zeek__modbusBig.pcap", 40),  # Modbus/TCP polling, 58 s
    ("benign/iotlab__lockly-hub-01.pcap", 120_000),  # smart-lock hub, 7 days
    ("benign/iotlab__blink-cam-01.pcap", 210_000),  # camera, 7 days
]  # the dev mix is left out: its first part holds attacks, which --learn would learn as normal


@dataclass
class Row:
    capture: str
    seconds: float
    learned: int
    normal: int  # normal packets scored (past the cut)
    learned_flagged: int
    shipped_flagged: int
    threshold: float
    epochs: int
    train_seconds: float

    def line(self) -> str:
        share = lambda n: f"{100 * n / self.normal:.2f} %"  # noqa: E731
        return (f"| {self.capture} | {self.seconds:,g} s ({self.learned:,}) | {self.normal:,} | "
                f"{share(self.learned_flagged)} ({self.learned_flagged:,}) | "
                f"{share(self.shipped_flagged)} ({self.shipped_flagged:,}) | "
                f"{self.epochs}, {self.train_seconds:.0f} s |")


def measure(data: Path, capture: str, seconds: float, config: TrainConfig) -> Row:
    path = data / capture
    labels = _labels(path)
    learned = learn_start(path, seconds, config, threads=2)
    pipeline = learned.pipeline()
    cut, learned_flags = None, 0
    for frames in learned.rest:
        scored = pipeline.process(frames)
        cut = frames.first_index if cut is None else cut
        learned_flags += int(np.count_nonzero(scored.anomalous & _normal(labels, frames)))
    assert cut is not None
    shipped = Pipeline(load_detector(DEFAULT_MODEL, threads=2))
    shipped_flags, normal = 0, 0
    for frames in read_batches(path):
        scored = shipped.process(frames)
        after = frames.first_index + np.arange(len(frames)) >= cut
        counted = after & _normal(labels, frames)
        normal += int(np.count_nonzero(counted))
        shipped_flags += int(np.count_nonzero(scored.anomalous & counted))
    r = learned.report
    return Row(capture, seconds, learned.learned, normal, learned_flags, shipped_flags,
               r.checkpoint.threshold, r.epochs, r.seconds)


def _labels(path: Path) -> np.ndarray | None:
    """Per-packet attack label (1) of a labelled capture, None for a benign one."""
    file = path.with_suffix(".labels.csv")
    if not file.exists():
        return None
    with file.open() as fh:
        return np.array([int(r["label"]) for r in csv.DictReader(fh)], dtype=np.int8)


def _normal(labels: np.ndarray | None, frames) -> np.ndarray:
    if labels is None:
        return np.ones(len(frames), bool)
    return labels[frames.first_index:frames.first_index + len(frames)] == 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=TrainConfig.epochs)
    args = parser.parse_args()
    data = Path(os.environ.get("NETIDS_SHARED_DATA", ROOT.parent / "shared" / "data"))
    out = sys.stdout
    out.write("| capture | learned from | normal packets scored | flagged, learned model | "
              "flagged, shipped model | epochs, training |\n|---|---|---|---|---|---|\n")
    for capture, seconds in CASES:
        out.write(measure(data, capture, seconds, TrainConfig(epochs=args.epochs)).line() + "\n")
        out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
