"""Cost of behaviour in the packet scores: ``score`` packets/s with connections and the
behaviour detectors merged into the scores (the default) against ``--no-behaviour`` (headers
alone), same run, alternating, on the shared dev mix and on a spoofed SYN flood built by
``bench_flood.py``.

    .venv/bin/python bench/bench_behaviour.py [--packets 200000] [--repeat 2]
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.bench_flood import build  # noqa: E402
from bench.score_digests import shared_data  # noqa: E402

KIND = "syn-flood"  # one target, spoofed sources (bench_flood.py)


def rate(capture: Path, out: Path, *extra: str) -> float:
    """Packets per second ``score`` reports (its own timing: model load left out)."""
    done = subprocess.run([sys.executable, str(ROOT / "app.py"), "score", str(capture),
                           "--out", str(out), *extra], capture_output=True, text=True,
                          check=True)
    found = re.search(r"\(([\d,]+)/s\)", done.stderr)
    assert found, done.stderr
    return float(found.group(1).replace(",", ""))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--packets", type=int, default=200_000, help="flood packets")
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        flood = Path(tmp) / "flood.pcap"
        build(KIND, flood, args.packets)
        for name, capture in (("mixed_dev.pcap", shared_data() / "mixed_dev.pcap"),
                              ("spoofed SYN flood", flood)):
            header, merged = [], []
            for _ in range(args.repeat):
                header.append(rate(capture, Path(tmp) / "h.csv", "--no-behaviour"))
                merged.append(rate(capture, Path(tmp) / "b.csv"))
            h, b = max(header), max(merged)
            sys.stdout.write(f"{name}: headers alone {h:,.0f}/s, with behaviour {b:,.0f}/s "
                             f"({b / h:.2f}x)\n")


if __name__ == "__main__":
    main()
