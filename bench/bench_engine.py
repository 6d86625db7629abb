"""Engine throughput: ``python app.py score`` end to end on one large capture, its stages one
after the other, beside scapy's full dissection and ``tcpdump -r FILE -w /dev/null`` measured in
the same run.

    .venv/bin/python bench/bench_engine.py [--model models/default.pt] [--capture FILE] [--runs 3]

The end-to-end figure runs the command exactly as ``app.py`` does (``netids.cli.main`` with the
same arguments and default settings: worker processes, torch threads, batch size), from parsing
its arguments and loading the model to the last CSV row written; only starting the interpreter
and importing the libraries (about a second, whatever the capture) is left out. The stages are
measured in this process, one after the other, each over the whole capture.

Without ``--capture`` it builds a >= 200k-packet capture by repeating the shared mixed_dev.pcap
(real benign traffic with 19 attack kinds), re-timed back to back.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from netids import cli  # noqa: E402
from netids.capture.pcapfile import read_batches, write_pcap  # noqa: E402
from netids.config import DEFAULT_MODEL, PROJECT_ROOT  # noqa: E402
from netids.detect.context import ContextFeatures  # noqa: E402
from netids.detect.decode import decode  # noqa: E402
from netids.detect.pipeline import Pipeline  # noqa: E402
from netids.detect.score_csv import format_rows  # noqa: E402
from netids.parallel.allocator import keep_freed_memory  # noqa: E402
from netids.training.checkpoint import load_detector

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


def score_command(capture: Path, out: Path, model: Path) -> float:
    """Seconds ``python app.py score CAPTURE --out OUT --model MODEL`` takes once started."""
    argv = ["score", str(capture), "--out", str(out), "--model", str(model)]
    said = io.StringIO()
    started = time.perf_counter()
    with contextlib.redirect_stderr(said):
        status = cli.main(argv)
    seconds = time.perf_counter() - started
    if status != 0:
        raise SystemExit(f"score failed: {said.getvalue().strip()}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--capture", type=Path)
    parser.add_argument("--runs", type=int, default=1, help="end-to-end runs (each printed)")
    parser.add_argument("--scapy-sample", type=int, default=20_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        capture = args.capture or Path(tmp) / "bench.pcap"
        if args.capture is None:
            build_capture(capture)
        # end to end first, from a process holding no more than app.py would
        score_s = [score_command(capture, Path(tmp) / "scores.csv", args.model)
                   for _ in range(args.runs)]

        keep_freed_memory()  # as the command does: stages measured under the same allocator
        t = time.perf_counter()
        batches = list(read_batches(capture))
        read_s = time.perf_counter() - t
        n = sum(len(b) for b in batches)
        print(f"capture: {capture.name}, {n:,} packets, {capture.stat().st_size / 1e6:.0f} MB")

        t = time.perf_counter()
        packets = [decode(b) for b in batches]
        decode_s = time.perf_counter() - t

        engine = ContextFeatures()
        t = time.perf_counter()
        features = [engine.update(p) for p in packets]
        context_s = time.perf_counter() - t

        pipeline = Pipeline(load_detector(args.model, threads=1))
        t = time.perf_counter()
        verdicts = [pipeline.judge(p, f) for p, f in zip(packets, features, strict=True)]
        judge_s = time.perf_counter() - t

        t = time.perf_counter()
        for b, p, v in zip(batches, packets, verdicts, strict=True):
            format_rows(b.first_index, p, v)
        csv_s = time.perf_counter() - t

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

    scapy_rate = len(frames) / scapy_s
    print("stages, one after the other in one process:")
    print(f"  read (pcap records)          {rate(n, read_s)}")
    print(f"  decode                       {rate(n, decode_s)}  "
          f"{(n / decode_s) / scapy_rate:6.0f}x scapy")
    print(f"  context features             {rate(n, context_s)}")
    print(f"  judge (model, explanations)  {rate(n, judge_s)}")
    print(f"  CSV rows                     {rate(n, csv_s)}")
    sequence_s = read_s + decode_s + context_s + judge_s + csv_s
    print(f"  all stages in sequence       {rate(n, sequence_s)}")
    for i, seconds in enumerate(score_s, 1):
        run = f"  (run {i})" if len(score_s) > 1 else ""
        print(f"score end to end (CSV out)   {rate(n, seconds)}  "
              f"{(n / seconds) / scapy_rate:6.0f}x scapy, "
              f"{seconds / tcpdump_s:5.1f}x tcpdump's time{run}")
    print(f"scapy full dissection        {rate(len(frames), scapy_s)}  (baseline)")
    print(f"tcpdump -r FILE -w /dev/null {rate(n, tcpdump_s)}  (baseline)")


if __name__ == "__main__":
    main()
