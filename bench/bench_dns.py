"""What reading DNS costs: the pipeline and event sink with and without the DNS reader and
detector, measured in the same run.

    .venv/bin/python bench/bench_dns.py [--packets 100000] [--runs 5]

Times are CPU time of this process (``time.process_time``, the model's threads included): on
a shared, loaded machine wall-clock swings more than the difference. Captures: the shared
mixed_dev.pcap (66k packets of real traffic, a few hundred DNS messages among them) and a
flood of ``--packets`` DNS queries for random names under one domain (every packet read, up
to the reader's cap of 4,096 a batch). Per capture, alternating, best of ``--runs``:
``Pipeline.process`` and ``EventSink.add`` over every batch of 4,096 with the shipped model,
``dns=True`` against ``dns=False``; and the reader alone per packet.
"""

from __future__ import annotations

import argparse
import random
import struct
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_flood import SHARED  # noqa: E402

from netids.capture.pcapfile import read_batches  # noqa: E402
from netids.config import DEFAULT_MODEL  # noqa: E402
from netids.detect.decode import decode  # noqa: E402
from netids.detect.dns import DnsReader  # noqa: E402
from netids.detect.frames import FrameBatch  # noqa: E402
from netids.detect.pipeline import Pipeline  # noqa: E402
from netids.store.sink import EventSink  # noqa: E402
from netids.training.checkpoint import load_detector  # noqa: E402


def query_flood(packets: int, batch: int = 4096) -> list[FrameBatch]:
    """``packets`` DNS queries from 10.0.0.9 for random 20-character names under one domain."""
    rng = random.Random(5)
    frames, stamps = [], []
    for i in range(packets):
        label = rng.randbytes(10).hex().encode()
        q = struct.pack("!HHHHHH", i & 0xFFFF, 0x0100, 1, 0, 0, 0)
        q += bytes([len(label)]) + label + b"\x06tunnel\x04test\x00\x00\x10\x00\x01"
        udp = struct.pack("!HHHH", 40000 + i % 1000, 53, 8 + len(q), 0)
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp) + len(q), 1, 0, 64, 17, 0,
                         bytes([10, 0, 0, 9]), bytes([10, 0, 0, 1]))
        frames.append(bytes(6) + bytes(6) + b"\x08\x00" + ip + udp + q)
        stamps.append(1_700_000_000.0 + i * 0.001)
    return [FrameBatch.from_frames(frames[k : k + batch], stamps[k : k + batch], first_index=k)
            for k in range(0, packets, batch)]


def pipeline_rate(batches: list, detector, dns: bool) -> tuple[float, int]:
    """Packets/s of the pipeline and the event sink over ``batches``; DNS alerts."""
    pipeline, sink = Pipeline(detector, dns=dns), EventSink(None)
    start = time.process_time()
    for frames in batches:
        sink.add(pipeline.process(frames))
    sink.finish()
    return sum(len(b) for b in batches) / (time.process_time() - start), sink.dns.alerts


def reader_us(batches: list) -> float:
    decoded = [(b, decode(b)) for b in batches]
    reader = DnsReader()
    start = time.process_time()
    for frames, packets in decoded:
        reader.read(frames, packets)
    return (time.process_time() - start) / sum(len(b) for b in batches) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--packets", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    detector = load_detector(DEFAULT_MODEL)
    for name, batches in (("mixed_dev.pcap", list(read_batches(SHARED / "mixed_dev.pcap", 4096))),
                          ("DNS query flood", query_flood(args.packets))):
        n = sum(len(b) for b in batches)
        rates: dict[bool, list[tuple[float, int]]] = {True: [], False: []}
        for _ in range(args.runs):
            for dns in (False, True):
                rates[dns].append(pipeline_rate(batches, detector, dns))
        (off, _), (on, alerts) = max(rates[False]), max(rates[True])
        print(f"{name} ({n:,} packets): pipeline + sink without DNS {off:,.0f} packets/s, "
              f"with {on:,.0f} ({on / off:.3f}x), {alerts} DNS alerts; reader alone "
              f"{reader_us(batches):.3f} us/packet")


if __name__ == "__main__":
    main()
