"""Engine throughput: decode, context features and end-to-end ``score`` on one large capture,
beside scapy's full dissection and ``tcpdump -r FILE -w /dev/null`` measured in the same run.

    .venv/bin/python bench/bench_engine.py [--model models/default.pt] [--capture FILE]

Without ``--capture`` it builds a >= 200k-packet capture by repeating the shared mixed_dev.pcap
(real benign traffic with 19 attack kinds), re-timed back to back.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from netids.config import DEFAULT_MODEL, PROJECT_ROOT  # noqa: E402
from netids.context import ContextFeatures  # noqa: E402
from netids.decode import decode  # noqa: E402
from netids.detector import Detector  # noqa: E402
from netids.pcapfile import read_batches, write_pcap  # noqa: E402
from netids.pipeline import Pipeline  # noqa: E402
from netids.score_command import score_file  # noqa: E402

SHARED = PROJECT_ROOT.parent / "shared" / "data"
MIN_PACKETS = 200_000


def build_capture(path: Path) -> int:
    """mixed_dev.pcap (real benign and attack traffic, 66k packets) repeated back to back,
    shifted in time, until it holds MIN_PACKETS packets."""
    source = SHARED / "mixed_dev.pcap"

    def records():
        offset, count = 0.0, 0
        while count < MIN_PACKETS:
            first = last = None
            for b in read_batches(source):
                for i in range(len(b)):
                    t = float(b.ts[i])
                    first = t if first is None else first
                    last = t
                    count += 1
                    yield offset + (t - first), b.frame(i), int(b.wirelen[i])
            offset += last - first + 1.0

    return write_pcap(path, records())


def rate(packets: int, seconds: float) -> str:
    return f"{packets / seconds:>12,.0f} packets/s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--capture", type=Path)
    parser.add_argument("--scapy-sample", type=int, default=20_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        capture = args.capture or Path(tmp) / "bench.pcap"
        if args.capture is None:
            build_capture(capture)
        batches = list(read_batches(capture))
        n = sum(len(b) for b in batches)
        print(f"capture: {capture.name}, {n:,} packets, {capture.stat().st_size / 1e6:.0f} MB")

        t = time.perf_counter()
        packets = [decode(b) for b in batches]
        decode_s = time.perf_counter() - t

        engine = ContextFeatures()
        t = time.perf_counter()
        for p in packets:
            engine.update(p)
        context_s = time.perf_counter() - t

        pipeline = Pipeline(Detector.load(args.model, threads=1))
        t = time.perf_counter()
        with open(Path(tmp) / "scores.csv", "w") as out:
            score_file(capture, out, pipeline)
        score_s = time.perf_counter() - t

        from scapy.all import Ether

        frames = [b.frame(i) for b in batches for i in range(len(b))][: args.scapy_sample]
        t = time.perf_counter()
        for f in frames:
            Ether(f)
        scapy_s = time.perf_counter() - t

        tcpdump = shutil.which("tcpdump")
        tcpdump_s = float("nan")
        if tcpdump:
            t = time.perf_counter()
            subprocess.run([tcpdump, "-nn", "-r", str(capture), "-w", "/dev/null"],
                           check=True, capture_output=True)
            tcpdump_s = time.perf_counter() - t

    print(f"decode (netids)              {rate(n, decode_s)}  "
          f"{(n / decode_s) / (len(frames) / scapy_s):6.0f}x scapy")
    print(f"context features             {rate(n, context_s)}")
    print(f"score end to end (CSV out)   {rate(n, score_s)}  "
          f"{(n / score_s) / (len(frames) / scapy_s):6.0f}x scapy, "
          f"{score_s / tcpdump_s:5.1f}x tcpdump's time")
    print(f"scapy full dissection        {rate(len(frames), scapy_s)}  (baseline)")
    print(f"tcpdump -r FILE -w /dev/null {rate(n, tcpdump_s)}  (baseline)")


if __name__ == "__main__":
    main()
