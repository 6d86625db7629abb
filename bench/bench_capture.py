# ruff: noqa: T201 - a benchmark prints its figures
"""Live capture rate and drops at a pushed rate, beside tcpdump on the same replay.

    sudo .venv/bin/python bench/bench_capture.py [--pps 100000] [--seconds 4]

tcpreplay pushes UDP frames from one lab namespace over a veth; the receiving end is
captured by netids' LiveSource, then (same replay again) by ``tcpdump -w /dev/null``.
Printed: packets pushed, captured, dropped, capture rate and the ratio to tcpdump. Then the
same at tcpreplay's top speed. Takes well under a minute. Needs root and tcpreplay.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import resource
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from netids.capture.live import LiveSource  # noqa: E402
from netids.config import CaptureSettings  # noqa: E402
from netids.lab.network import LabNetwork  # noqa: E402
from netids.lab.throughput import count_live, replay, write_udp_burst  # noqa: E402

PORT = 47100


@dataclass
class Result:
    who: str
    pushed: int
    captured: int
    dropped: int
    seconds: float
    rss_growth_mb: float = 0.0
    cpu_us_per_packet: float = 0.0

    @property
    def rate(self) -> float:
        return self.captured / self.seconds if self.seconds else 0.0


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)  # not the children: tcpreplay is one
    return usage.ru_utime + usage.ru_stime


async def with_live_source(net: LabNetwork, pcap: Path, pps: int | None, loops: int) -> Result:
    source = LiveSource("eth0", f"udp dst port {PORT}", CaptureSettings(), netns=net.hosts["b"].ns)
    cpu0 = cpu_seconds()
    (sent, secs), live = await count_live(source, lambda: replay(net, "a", pcap, pps, loops))
    cpu = cpu_seconds() - cpu0  # capture thread + consumer + this process's waiting
    stats = source.stats()
    return Result(
        "netids LiveSource",
        sent,
        live.packets,
        stats.kernel_drops + stats.queue_drops,
        secs,
        live.rss_growth_mb,
        cpu / max(1, live.packets) * 1e6,
    )


def with_tcpdump(net: LabNetwork, pcap: Path, pps: int | None, loops: int) -> Result:
    dump = net.popen(
        "b",
        "tcpdump",
        "-nn",
        "-i",
        "eth0",
        "-B",
        "32768",
        "-w",
        "/dev/null",
        "udp",
        "dst",
        "port",
        str(PORT),
        stderr=subprocess.PIPE,
    )
    time.sleep(1.0)
    sent, secs = replay(net, "a", pcap, pps, loops)
    time.sleep(1.5)
    dump.send_signal(signal.SIGINT)
    err = dump.communicate(timeout=10)[1].decode()
    captured = int(re.search(r"(\d+) packets captured", err).group(1))  # type: ignore[union-attr]
    dropped = int(re.search(r"(\d+) packets dropped by kernel", err).group(1))  # type: ignore[union-attr]
    return Result("tcpdump -w /dev/null", sent, captured, dropped, secs)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pps", type=int, default=100_000, help="pushed rate (default 100000)")
    parser.add_argument("--seconds", type=float, default=4.0, help="seconds per replay")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, LabNetwork({"a": 21, "b": 22}) as net:
        pcap = Path(tmp) / "burst.pcap"
        per_file = 50_000
        write_udp_burst(pcap, per_file, net.hosts["a"], net.hosts["b"], PORT)
        for pps in (args.pps, None):
            loops = max(1, round(args.pps * args.seconds / per_file))
            live = asyncio.run(with_live_source(net, pcap, pps, loops))
            dump = with_tcpdump(net, pcap, pps, loops)
            label = f"{pps} pps" if pps else "top speed"
            print(f"--- pushed at {label}")
            for r in (live, dump):
                print(
                    f"{r.who:22s} pushed {r.pushed:8d} in {r.seconds:5.2f} s"
                    f"  captured {r.captured:8d}"
                    f"  dropped {r.dropped:7d}  {r.rate / 1000:7.1f} k packets/s"
                    + (
                        f"  peak RSS {r.rss_growth_mb:+.1f} MB"
                        f"  CPU {r.cpu_us_per_packet:.2f} us/packet"
                        if r is live
                        else ""
                    )
                )
            ratio = live.captured / dump.captured if dump.captured else float("nan")
            print(f"ratio netids/tcpdump captured: {ratio:.3f}")
    print(
        f"max RSS of this process: "
        f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
