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

from netids.capture import LiveSource  # noqa: E402
from netids.config import CaptureSettings  # noqa: E402
from netids.lab import LabNetwork, write_udp_burst  # noqa: E402

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


def replay(net: LabNetwork, pcap: Path, rate: str, loops: int) -> tuple[int, float]:
    """Push ``pcap`` ``loops`` times from host a; return (packets sent, seconds)."""
    speed = ["--topspeed"] if rate == "top" else ["--pps", rate]
    out = net.run(
        "a",
        "tcpreplay",
        "-q",
        "-i",
        "eth0",
        "-K",
        *speed,
        "--loop",
        str(loops),
        str(pcap),
        timeout=120,
    )
    sent = int(re.search(r"Successful packets:\s+(\d+)", out).group(1))  # type: ignore[union-attr]
    secs = float(re.search(r"packets \(\d+ bytes\) sent in ([\d.]+) seconds", out).group(1))  # type: ignore[union-attr]
    return sent, secs


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)  # not the children: tcpreplay is one
    return usage.ru_utime + usage.ru_stime


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def with_live_source(net: LabNetwork, pcap: Path, rate: str, loops: int) -> Result:
    source = LiveSource("eth0", f"udp dst port {PORT}", CaptureSettings(), netns=net.hosts["b"].ns)
    source.start()
    count, peak = 0, 0.0

    async def consume() -> None:
        nonlocal count
        async for batch in source.batches():
            count += len(batch)

    async def watch_memory() -> None:
        nonlocal peak
        while True:
            peak = max(peak, rss_mb())
            await asyncio.sleep(0.1)

    task = asyncio.create_task(consume())
    await asyncio.sleep(0.3)
    rss0 = rss_mb()  # the ring is mapped by now
    watcher = asyncio.create_task(watch_memory())
    cpu0 = cpu_seconds()
    sent, secs = await asyncio.to_thread(replay, net, pcap, rate, loops)
    await asyncio.sleep(0.5)
    source.stop()
    await task
    watcher.cancel()
    cpu = cpu_seconds() - cpu0  # capture thread + consumer + this process's waiting
    stats = source.stats()
    return Result(
        "netids LiveSource",
        sent,
        count,
        stats.kernel_drops + stats.queue_drops,
        secs,
        peak - rss0,
        cpu / max(1, count) * 1e6,
    )


def with_tcpdump(net: LabNetwork, pcap: Path, rate: str, loops: int) -> Result:
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
    sent, secs = replay(net, pcap, rate, loops)
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
        for rate in (str(args.pps), "top"):
            loops = max(1, round(args.pps * args.seconds / per_file))
            live = asyncio.run(with_live_source(net, pcap, rate, loops))
            dump = with_tcpdump(net, pcap, rate, loops)
            label = f"{args.pps} pps" if rate != "top" else "top speed"
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
