"""Connection records: the tracker's cost per packet, ``score`` with and without ``--conn``,
and its memory under a flood of spoofed SYNs.

    .venv/bin/python bench/bench_conn.py [--flood 500000] [--repeat 3]

1. Tracker alone, per packet, against decoding the same batches (4096 packets) in the same
   run: on the bundled lab sample (scans, a SYN flood, ARP spoofing: many short
   connections), on the shared mixed_dev.pcap (real traffic with attacks) and on a flood of
   ``--flood`` SYNs from random spoofed sources and ports (one connection per packet, built
   as in bench_flood.py). Best of ``--repeat`` runs each, three ways: the records as the
   tracker returns them (columns), also written as conn.log text (``zeek_text``, what
   ``score --conn`` does), and also built into ``ConnRecord`` objects (what a reader that
   iterates them pays).
2. ``app.py score`` end to end on mixed_dev.pcap and on the flood, with and without
   ``--conn``, alternating, best of ``--repeat``: packets/s and their ratio.
3. The flood's state: connections held against the table's capacity, those written early
   (evicted), and the tracker's memory (its arrays, and the process's peak RSS growth).
"""

from __future__ import annotations

import argparse
import re
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from bench_flood import SHARED, write_flood  # noqa: E402

from netids.capture.pcapfile import read_batches  # noqa: E402
from netids.detect.conn_columns import ConnRecords, zeek_text  # noqa: E402
from netids.detect.connections import ConnTracker  # noqa: E402
from netids.detect.decode import decode  # noqa: E402

SAMPLE = ROOT / "netids" / "samples" / "lab_sample.pcap"
MIX = SHARED / "mixed_dev.pcap"


USES: dict[str, Callable[[ConnRecords], object]] = {
    "columns": len, "text": zeek_text, "records": ConnRecords.records}


def tracker_cost(path: Path, repeat: int) -> tuple[int, int, dict[str, float], float,
                                                   ConnTracker]:
    """Packets, records, best µs/packet of the tracker (each use of its records in USES)
    and of decoding, the last tracker."""
    frames = list(read_batches(path, 4096))
    batches = [decode(f) for f in frames]
    n = sum(len(b) for b in batches)
    best = dict.fromkeys(USES, float("inf"))
    best_decode = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        for f in frames:
            decode(f)
        best_decode = min(best_decode, time.perf_counter() - start)
        for use_name, use in USES.items():
            tracker, records = ConnTracker(), 0
            start = time.perf_counter()
            for b in batches:
                out = tracker.update(b)
                records += len(out)
                use(out)
            held = len(tracker)
            out = tracker.flush()
            records += len(out)
            use(out)
            best[use_name] = min(best[use_name], time.perf_counter() - start)
    tracker.held_at_end = held  # type: ignore[attr-defined]
    return n, records, {k: v * 1e6 / n for k, v in best.items()}, best_decode * 1e6 / n, tracker


def score_rate(capture: Path, out: Path, conn: Path | None) -> float:
    extra = ["--conn", str(conn)] if conn else []
    done = subprocess.run([sys.executable, str(ROOT / "app.py"), "score", str(capture),
                           "--out", str(out), *extra], capture_output=True, text=True,
                          check=True)
    return float(re.search(r"\(([\d,]+)/s\)", done.stderr).group(1).replace(",", ""))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flood", type=int, default=500_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        flood = Path(tmp) / "flood.pcap"
        write_flood(flood, args.flood, random_targets=False, seed=1)
        print("tracker us/packet, and its ratio to decoding the same packets in this run")
        print("capture          packets  records  decode   columns (ratio)  +text (ratio)  "
              "+records (ratio)")
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        for name, path in (("lab_sample", SAMPLE), ("mixed_dev", MIX), ("syn flood", flood)):
            n, records, track, dec, tracker = tracker_cost(path, args.repeat)
            print(f"{name:<15} {n:>8,} {records:>8,} {dec:>7.3f} "
                  + "  ".join(f"{track[k]:>8.3f} ({track[k] / dec:4.2f})" for k in USES))
        rss_growth = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before) / 1024
        arrays = sum(v.nbytes for part in (tracker, tracker.tcp) for v in vars(part).values()
                     if hasattr(v, "nbytes"))  # its own and its TCP state's
        print(f"flood state: {tracker.held_at_end:,}/{tracker.config.capacity:,} connections "
              f"held before the flush, {tracker.evicted:,} written early (evicted); tracker "
              f"arrays {arrays / 2**20:.1f} MiB; peak RSS grew {rss_growth:.0f} MiB over all "
              f"three runs")
        for name, path in (("mixed_dev.pcap", MIX), ("the syn flood", flood)):
            rates: dict[bool, float] = {False: 0.0, True: 0.0}
            for _ in range(args.repeat):
                for with_conn in (False, True):
                    conn = Path(tmp) / "conn.log" if with_conn else None
                    rate = score_rate(path, Path(tmp) / "s.csv", conn)
                    rates[with_conn] = max(rates[with_conn], rate)
            print(f"score {name}: {rates[False]:,.0f} packets/s without --conn, "
                  f"{rates[True]:,.0f} with (ratio {rates[True] / rates[False]:.3f})")


if __name__ == "__main__":
    main()
