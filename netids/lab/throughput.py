"""Load on live capture: a UDP burst pushed from a lab host, and counting what a source gets.

The capture bench and the 100k packets/s test share these: :func:`write_udp_burst` makes the
pcap, :func:`replay` pushes it with tcpreplay, :func:`count_live` counts a live source (and
this process's memory) while it runs.
"""

from __future__ import annotations

import asyncio
import re
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from netids.capture.live import LiveSource
from netids.capture.pcapfile import PcapWriter
from netids.detect.frames import LINKTYPE_ETHERNET
from netids.lab.network import Host, LabError, LabNetwork

T = TypeVar("T")


def write_udp_burst(
    path: str | Path, count: int, src: Host, dst: Host, port: int, payload: int = 18
) -> None:
    """A pcap of ``count`` UDP datagrams ``src`` -> ``dst``:``port`` for tcpreplay pushes."""
    eth = bytes.fromhex(dst.mac.replace(":", "") + src.mac.replace(":", "")) + b"\x08\x00"
    sip, dip = (bytes(int(x) for x in h.ip.split(".")) for h in (src, dst))
    with Path(path).open("wb") as fh:
        pcap = PcapWriter(fh, LINKTYPE_ETHERNET, 65535)
        for i in range(count):
            udp = struct.pack("!HHHH", 40000 + i % 20000, port, 8 + payload, 0) + bytes(payload)
            ip = struct.pack(
                "!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), i & 0xFFFF, 0, 64, 17, 0, sip, dip
            )
            ip = ip[:10] + struct.pack("!H", _checksum(ip)) + ip[12:]
            ns = (1_700_000_000 + i // 100_000) * 10**9 + (i % 100_000) * 10_000  # 10 us apart
            pcap.write_ns(ns, eth + ip + udp)


def replay(net: LabNetwork, host: str, pcap: Path, pps: int | None,
           loops: int) -> tuple[int, float]:
    """Push ``pcap`` ``loops`` times from ``host`` with tcpreplay at ``pps`` packets/s (None:
    top speed); return (packets sent, seconds it took)."""
    speed = ["--topspeed"] if pps is None else ["--pps", str(pps)]
    out = net.run(host, "tcpreplay", "-q", "-i", "eth0", "-K", *speed, "--loop", str(loops),
                  str(pcap), timeout=120)
    sent = re.search(r"Successful packets:\s+(\d+)", out)
    secs = re.search(r"packets \(\d+ bytes\) sent in ([\d.]+) seconds", out)
    if sent is None or secs is None:
        raise LabError(f"tcpreplay printed no totals: {out.strip()[-200:]}")
    return int(sent.group(1)), float(secs.group(1))


@dataclass
class LiveCount:
    """What :func:`count_live` saw."""

    packets: int  # packets in the batches the source delivered
    rss_growth_mb: float  # this process's peak RSS above its level once the source ran


async def count_live(source: LiveSource, work: Callable[[], T]) -> tuple[T, LiveCount]:
    """Run blocking ``work`` (a traffic generator) in a thread while counting what ``source``
    captures and watching this process's memory; the source is started and stopped here."""
    source.start()
    counted, peak = 0, 0.0

    async def consume() -> None:
        nonlocal counted
        async for batch in source.batches():
            counted += len(batch)

    async def watch_memory() -> None:
        nonlocal peak
        while True:
            peak = max(peak, _rss_mb())
            await asyncio.sleep(0.1)

    consumer = asyncio.create_task(consume())
    await asyncio.sleep(0.5)
    base = _rss_mb()  # the ring is mapped by now
    watcher = asyncio.create_task(watch_memory())
    try:
        result = await asyncio.to_thread(work)
        await asyncio.sleep(0.5)  # the last frames reach the queue
    finally:
        source.stop()
        await consumer
        watcher.cancel()
    return result, LiveCount(counted, max(peak, _rss_mb()) - base)


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _checksum(data: bytes) -> int:
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF
