"""What the payload checks cost: the pipeline with and without them, and decoding with and
without the ``payload_at`` column, each pair measured in the same run.

    .venv/bin/python bench/bench_payload.py [--base DIR] [--packets 200000] [--runs 3]

Times are CPU time of this process (``time.process_time``, the model's threads included), not
wall-clock: on a shared, loaded machine wall-clock swung by 30 % between identical runs.
Captures: the shared mixed_dev.pcap (66k packets of real traffic, HTTP among it) and the
spoofed SYN flood of ``bench/bench_flood.py`` (``--packets`` packets). Per capture, alternating
best of ``--runs``:

- ``pipeline``: ``Pipeline.process`` and ``EventSink.add`` over every batch of 4,096 (what
  ``score`` runs per batch, CSV text and worker processes left out), with the shipped model,
  ``payload=True`` against ``payload=False``;
- ``inspect``: the inspector alone per packet (selection and parsing);
- ``decode``: ``decode`` of this checkout against that of ``--base`` (a checkout without the
  column, e.g. ``git archive 9e9229d | tar -x -C DIR``), each in a process of its own.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_flood import SHARED, build  # noqa: E402

from netids.capture.pcapfile import read_batches  # noqa: E402
from netids.config import DEFAULT_MODEL  # noqa: E402
from netids.detect.decode import decode  # noqa: E402
from netids.detect.payload import PayloadInspector  # noqa: E402
from netids.detect.pipeline import Pipeline  # noqa: E402
from netids.store.sink import EventSink  # noqa: E402
from netids.training.checkpoint import load_detector  # noqa: E402

DECODE_TIMER = """
import sys, time
sys.path.insert(0, {root!r})
from netids.capture.pcapfile import read_batches
from netids.detect.decode import decode
batches = list(read_batches({capture!r}, 4096))
times = []
for _ in range(7):
    t = time.process_time()
    for b in batches:
        decode(b)
    times.append(time.process_time() - t)
print(min(times))
"""


def pipeline_rate(batches: list, detector, payload: bool) -> tuple[float, int]:
    """Packets/s of the pipeline and the event sink over ``batches``; payload events."""
    pipeline, sink = Pipeline(detector, payload=payload), EventSink(None)
    start = time.process_time()
    for frames in batches:
        sink.add(pipeline.process(frames))
    found = len(sink.finish())
    return sum(len(b) for b in batches) / (time.process_time() - start), found


def inspect_us(batches: list) -> float:
    decoded = [(b, decode(b)) for b in batches]
    inspector = PayloadInspector()
    start = time.process_time()
    for frames, packets in decoded:
        inspector.inspect(frames, packets)
    return (time.process_time() - start) / sum(len(b) for b in batches) * 1e6


def decode_seconds(project: Path, capture: Path) -> float:
    code = DECODE_TIMER.format(root=str(project), capture=str(capture))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, cwd=project)
    return float(done.stdout.split()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", type=Path, help="a checkout to compare decoding with")
    parser.add_argument("--packets", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    detector = load_detector(DEFAULT_MODEL)
    with tempfile.TemporaryDirectory() as tmp:
        flood = Path(tmp) / "syn-flood.pcap"
        build("syn-flood", flood, args.packets)
        for capture in (SHARED / "mixed_dev.pcap", flood):
            batches = list(read_batches(capture, 4096))
            n = sum(len(b) for b in batches)
            rates = {True: [], False: []}
            for _ in range(args.runs):
                for payload in (False, True):
                    rates[payload].append(pipeline_rate(batches, detector, payload))
            (off, _), (on, events) = max(rates[False]), max(rates[True])
            print(f"{capture.name} ({n:,} packets): pipeline without payload checks "
                  f"{off:,.0f} packets/s, with {on:,.0f} ({on / off:.3f}x), "
                  f"{events} events with; inspector alone {inspect_us(batches):.3f} us/packet")
            if args.base:
                pairs = [(decode_seconds(args.base, capture), decode_seconds(ROOT, capture))
                         for _ in range(args.runs)]
                before, after = min(p[0] for p in pairs), min(p[1] for p in pairs)
                print(f"  decode: before {before / n * 1e6:.3f} us/packet, after "
                      f"{after / n * 1e6:.3f} ({after / before:.3f}x)")


if __name__ == "__main__":
    main()
