"""What following connections costs the live pipeline when it sheds load.

    .venv/bin/python bench/bench_shed_conn.py [--flood 200000] [--repeat 2]

Under overload the pipeline scores a small share and only decodes and counts the rest; the
connection tracker (:class:`~netids.detect.tracking.ConnFeed`) still sees every decoded
packet. This measures, per packet and best of ``--repeat``, ``Pipeline.process`` at the
smallest share (1/256, as the shedder's floor) with and without the tracker, on the bundled
lab sample and on a flood of spoofed SYNs (one connection per packet, the tracker's worst
case), and the same at full share for reference: all in the same run, so the ratios hold on a
loaded machine.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from bench_flood import write_flood  # noqa: E402

from netids.capture.pcapfile import read_batches  # noqa: E402
from netids.config import DEFAULT_MODEL  # noqa: E402
from netids.detect.pipeline import Pipeline  # noqa: E402
from netids.detect.shedding import SheddingConfig  # noqa: E402
from netids.detect.tracking import ConnFeed  # noqa: E402
from netids.training.checkpoint import load_detector  # noqa: E402

SAMPLE = ROOT / "netids" / "samples" / "lab_sample.pcap"


def cost(path: Path, share: float, track: bool, repeat: int) -> float:
    """Best µs per packet of the pipeline (and the tracker, when ``track``) over the file."""
    frames = list(read_batches(path, 4096))
    n = sum(len(f) for f in frames)
    detector = load_detector(DEFAULT_MODEL, threads=1)
    best = float("inf")
    for _ in range(repeat):
        pipeline, feed = Pipeline(detector), ConnFeed()
        start = time.perf_counter()
        for f in frames:
            scored = pipeline.process(f, share)
            if track:
                feed.update(scored)
        if track:
            feed.flush()
        best = min(best, time.perf_counter() - start)
    return best * 1e6 / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flood", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    floor = SheddingConfig().min_share
    with tempfile.TemporaryDirectory() as tmp:
        flood = Path(tmp) / "flood.pcap"
        write_flood(flood, args.flood, random_targets=False, seed=1)
        for name, path in (("lab_sample", SAMPLE), ("syn flood", flood)):
            for share in (1.0, 0.25, floor):
                without = cost(path, share, False, args.repeat)
                with_conn = cost(path, share, True, args.repeat)
                print(f"{name:10s} share {share:<9.4g} pipeline {without:6.2f} µs/packet, "
                      f"with connections {with_conn:6.2f} µs/packet ({with_conn / without:.2f}x)")


if __name__ == "__main__":
    main()
