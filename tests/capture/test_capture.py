"""Live capture in lab namespaces and on loopback, and the file source, as a caller sees them."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import socket
import struct
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from netids.capture.files import FileSource
from netids.capture.interfaces import list_interfaces
from netids.capture.live import LiveSource
from netids.capture.pcapfile import write_pcap
from netids.capture.source import CaptureError
from netids.config import PROJECT_ROOT, CaptureSettings
from netids.detect.frames import LINKTYPE_ETHERNET, LINKTYPE_RAW

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="live capture needs root")
SETTINGS = CaptureSettings(batch_size=512, batch_timeout=0.05)

SEND_UDP = """
import socket, sys
n, dst, port, size = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for i in range(n):
    s.sendto(bytes(size), (dst, port))
"""


async def capture_while(source: LiveSource, action, settle: float = 0.3) -> list:
    """Start ``source``, run ``action`` in a thread, stop after it; return the batches."""
    source.start()
    batches = []

    async def act_then_stop() -> None:
        try:
            await asyncio.sleep(0.2)
            await asyncio.to_thread(action)
            await asyncio.sleep(settle)
        finally:
            source.stop()

    task = asyncio.create_task(act_then_stop())
    async for batch in source.batches():
        batches.append(batch)
    await task
    return batches


@needs_root
async def test_live_capture_counts_exactly_the_datagrams_sent(lab_net) -> None:
    n, port = 3000, 47001
    source = LiveSource("br0", f"udp and dst port {port}", SETTINGS, netns=lab_net.switch)
    t0 = time.time()
    batches = await capture_while(
        source,
        lambda: lab_net.run(
            "a", sys.executable, "-c", SEND_UDP, str(n), lab_net.ip("b"), str(port), "100"
        ),
    )
    frames = sum(len(b) for b in batches)
    assert frames == n
    assert all(len(b) <= SETTINGS.batch_size for b in batches)
    stats = source.stats()
    assert (stats.packets, stats.kernel_drops, stats.queue_drops) == (n, 0, 0)
    first = batches[0]
    assert first.first_index == 0 and batches[-1].first_index == n - len(batches[-1])
    assert set(first.linktype.tolist()) == {LINKTYPE_ETHERNET}
    assert first.wirelen[0] == 14 + 20 + 8 + 100 == first.caplen[0]
    frame = first.frame(0)
    assert frame[30:34] == socket.inet_aton(lab_net.ip("b"))  # IPv4 destination
    assert t0 < first.ts[0] < time.time()  # kernel timestamps, seconds since the epoch


@needs_root
async def test_bpf_filter_passes_only_matching_packets_from_the_kernel(lab_net) -> None:
    source = LiveSource("br0", "icmp", SETTINGS, netns=lab_net.switch)

    def traffic() -> None:
        lab_net.run("a", sys.executable, "-c", SEND_UDP, "200", lab_net.ip("b"), "47002", "50")
        lab_net.run("a", "ping", "-c", "5", "-i", "0.05", lab_net.ip("b"))

    batches = await capture_while(source, traffic)
    frames = [b.frame(i) for b in batches for i in range(len(b))]
    assert frames and all(f[12:14] == b"\x08\x00" and f[23] == 1 for f in frames)  # all ICMP
    echo = [f for f in frames if f[34] in (0, 8)]  # echo reply / request
    assert len(echo) == 10
    # the kernel dropped the UDP before the ring: the source never counted it
    assert source.stats().packets == len(frames)


@needs_root
@pytest.mark.parametrize("interface", ["lo", None])
async def test_loopback_packets_are_counted_once(interface) -> None:
    n, port = 500, 47003
    source = LiveSource(interface, f"udp and dst port {port}", SETTINGS)
    code = SEND_UDP
    batches = await capture_while(
        source,
        lambda: subprocess.run(
            [sys.executable, "-c", code, str(n), "127.0.0.1", str(port), "20"], check=True
        ),
    )
    assert sum(len(b) for b in batches) == n


def test_invalid_filter_is_a_plain_capture_error() -> None:
    with pytest.raises(CaptureError) as err:
        LiveSource("lo", "tcp port nonsense and", SETTINGS)
    assert str(err.value).startswith("invalid capture filter 'tcp port nonsense and': ")
    assert "Traceback" not in str(err.value)


@needs_root
def test_capture_without_cap_net_raw_says_how_to_fix_it(tmp_path: Path) -> None:
    script = textwrap.dedent(
        """
        import asyncio
        from netids.capture.live import LiveSource
        from netids.capture.source import CaptureError
        from netids.config import CaptureSettings

        async def main():
            try:
                LiveSource("lo", "udp", CaptureSettings()).start()
            except CaptureError as exc:
                print(exc)

        asyncio.run(main())
        """
    )
    done = subprocess.run(
        ["setpriv", "--bounding-set=-net_raw", "--inh-caps=-net_raw", sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=PROJECT_ROOT,
        env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)},
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("capture needs root or CAP_NET_RAW: run as root, or ")
    assert "setcap cap_net_raw,cap_net_admin+eip" in done.stdout


@needs_root
async def test_unknown_interface_is_a_plain_capture_error() -> None:
    with pytest.raises(CaptureError, match="no network interface named 'nosuch0'"):
        LiveSource("nosuch0", None, SETTINGS).start()


@needs_root
async def test_interface_that_vanishes_stops_the_capture_with_a_plain_error() -> None:
    ns = f"netids-lab-{os.getpid()}-vanish"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        subprocess.run(
            ["ip", "-n", ns, "link", "add", "d0", "type", "veth", "peer", "name", "d1"], check=True
        )
        subprocess.run(["ip", "-n", ns, "link", "set", "d0", "up"], check=True)
        source = LiveSource("d0", None, SETTINGS, netns=ns)
        source.start()
        subprocess.run(["ip", "-n", ns, "link", "del", "d0"], check=True)
        with pytest.raises(CaptureError, match="'d0' went down or vanished"):
            async with asyncio.timeout(5):
                async for _ in source.batches():
                    pass
        source.stop()
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)


@needs_root
async def test_a_slow_consumer_loses_whole_batches_counted_never_blocks() -> None:
    n, port = 3000, 47004
    settings = CaptureSettings(batch_size=100, batch_timeout=0.02, queue_batches=2)
    source = LiveSource("lo", f"udp and dst port {port}", settings)
    source.start()
    try:
        await asyncio.sleep(0.2)  # nobody consumes while the datagrams arrive
        await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-c", SEND_UDP, str(n), "127.0.0.1", str(port), "20"],
            check=True,
        )
        await asyncio.sleep(0.5)
    finally:
        source.stop()
    got = 0
    async for batch in source.batches():
        got += len(batch)
    stats = source.stats()
    assert got <= 2 * settings.batch_size  # at most queue_batches batches were held
    assert stats.queue_drops == n - got and stats.queue_dropped_batches > 0
    assert stats.packets == n and stats.kernel_drops == 0


@needs_root
async def test_a_consumer_that_fell_behind_takes_the_waiting_batches_in_one_go() -> None:
    n, port = 1000, 47005
    settings = CaptureSettings(batch_size=100, batch_timeout=0.2, queue_batches=30)
    source = LiveSource("lo", f"udp and dst port {port}", settings)
    source.start()
    try:
        await asyncio.sleep(0.2)  # nobody consumes while the datagrams arrive
        await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-c", SEND_UDP, str(n), "127.0.0.1", str(port), "20"],
            check=True,
        )
        await asyncio.sleep(0.5)
        behind = source.backlog()
        assert behind >= 10  # 1000 datagrams in batches of at most 100, all waiting
        first = [b async for b in _first(source)]
        taken = source.waiting(5)
        assert len(taken) == 5 and source.backlog() == behind - 6
        rest = source.waiting(100)
    finally:
        source.stop()
    after = [b async for b in source.batches()]  # the end still comes, after nothing more
    got = first + taken + rest + after
    assert sum(len(b) for b in got) == n and not after
    starts = np.cumsum([0] + [len(b) for b in got[:-1]])
    assert [b.first_index for b in got] == starts.tolist()  # in order, none lost
    assert source.stats().queue_drops == 0


async def _first(source: LiveSource):
    async for batch in source.batches():
        yield batch
        return


def test_list_interfaces_shows_loopback_up() -> None:
    lo = next(i for i in list_interfaces() if i.name == "lo")
    assert lo.up and lo.index >= 1 and lo.linktype == LINKTYPE_ETHERNET
    assert any(a.startswith("127.0.0.1/") for a in lo.addresses)


async def test_file_source_has_the_live_api(tmp_path: Path) -> None:
    path = tmp_path / "three.pcap"
    write_pcap(path, [(100.0, b"\x00" * 60), (100.25, b"\x01" * 70), (100.5, b"\x02" * 80)])
    source = FileSource(path, CaptureSettings(batch_size=2))
    source.start()
    batches = [b async for b in source.batches()]
    assert [len(b) for b in batches] == [2, 1] and batches[1].first_index == 2
    assert source.stats().packets == 3 and source.stats().bytes == 210

    paced = FileSource(path, CaptureSettings(batch_timeout=0.1), realtime=True)
    paced.start()
    t = time.monotonic()
    got = [b async for b in paced.batches()]
    assert sum(len(b) for b in got) == 3 and len(got) == 3  # one per 0.1 s window
    assert time.monotonic() - t >= 0.45  # the file spans 0.5 s


async def test_file_source_reports_a_missing_file_plainly(tmp_path: Path) -> None:
    with pytest.raises(CaptureError, match="no such capture file"):
        FileSource(tmp_path / "nope.pcap", SETTINGS).start()


@needs_root
@pytest.mark.slow
@pytest.mark.skipif(shutil.which("tcpreplay") is None, reason="needs tcpreplay")
async def test_100k_packets_per_second_for_10_s_without_drops_in_bounded_memory(
    lab_net, tmp_path: Path
) -> None:
    from netids.lab.throughput import count_live, replay, write_udp_burst

    port = 47100
    pcap = tmp_path / "burst.pcap"
    write_udp_burst(pcap, 100_000, lab_net.hosts["a"], lab_net.hosts["b"], port)
    source = LiveSource(
        "eth0", f"udp dst port {port}", CaptureSettings(), netns=lab_net.hosts["b"].ns
    )
    (sent, seconds), live = await count_live(
        source, lambda: replay(lab_net, "a", pcap, 100_000, 10))
    stats = source.stats()
    logging.getLogger(__name__).warning(
        f"pushed {sent} in {seconds:.2f} s, captured {live.packets}, kernel drops "
        f"{stats.kernel_drops}, queue drops {stats.queue_drops}, RSS +{live.rss_growth_mb:.1f} MB"
    )
    assert sent == 1_000_000  # asked for at 100k/s; a busy machine may push slower
    assert live.packets + stats.queue_drops == stats.packets  # every frame is accounted for
    assert stats.packets + stats.kernel_drops == sent
    assert stats.kernel_drops == 0 and stats.queue_drops == 0
    assert live.rss_growth_mb < 64  # MB: the ring is mapped before counting; batches come and go


@needs_root
@pytest.mark.skipif(shutil.which("tcpreplay") is None, reason="needs tcpreplay")
async def test_vlan_tags_stripped_by_the_kernel_are_put_back(lab_net, tmp_path: Path) -> None:
    a, b = lab_net.hosts["a"], lab_net.hosts["b"]
    mac = bytes.fromhex(b.mac.replace(":", "")) + bytes.fromhex(a.mac.replace(":", ""))
    ip = bytes.fromhex("4500001c00000000401100000a4d00150a4d0016")  # 10.77.0.21 -> .22, UDP
    udp = struct.pack("!HHHH", 40000, 47005, 8, 0)
    tagged = mac + b"\x81\x00\x00\x0a" + b"\x08\x00" + ip + udp  # VLAN 10
    pcap = tmp_path / "vlan.pcap"
    write_pcap(pcap, [(1.0 + i, tagged) for i in range(20)])
    source = LiveSource("eth0", "vlan 10 and udp dst port 47005", SETTINGS, netns=b.ns)
    batches = await capture_while(
        source, lambda: lab_net.run("a", "tcpreplay", "-q", "-i", "eth0", "--topspeed", str(pcap))
    )
    frames = [batch.frame(i) for batch in batches for i in range(len(batch))]
    assert frames == [tagged] * 20
    assert all(int(w) == len(tagged) for batch in batches for w in batch.wirelen)


TUN_INJECT = """
import fcntl, os, struct, subprocess, sys, time
n, port = int(sys.argv[1]), int(sys.argv[2])
fd = os.open("/dev/net/tun", os.O_RDWR)
fcntl.ioctl(fd, 0x400454CA, struct.pack("16sH", b"tun0", 0x0001 | 0x1000))  # IFF_TUN|IFF_NO_PI
subprocess.run(["ip", "addr", "add", "10.78.0.1/24", "dev", "tun0"], check=True)
subprocess.run(["ip", "link", "set", "tun0", "up"], check=True)
print("ready", flush=True)
sys.stdin.readline()
udp = struct.pack("!HHHH", 40000, port, 12, 0) + b"tun!"
ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, 17, 0,
                 bytes([10, 78, 0, 2]), bytes([10, 78, 0, 1]))
for _ in range(n):
    os.write(fd, ip + udp)
    os.write(fd, ip[:9] + bytes([1]) + ip[10:] + udp)  # the same as "ICMP": filtered out
print("sent", flush=True)
sys.stdin.readline()
"""


@needs_root
@pytest.mark.skipif(not Path("/dev/net/tun").exists(), reason="needs /dev/net/tun")
async def test_tun_frames_are_raw_ip_and_filtered_as_raw_ip() -> None:
    ns = f"netids-lab-{os.getpid()}-tun"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    injector = subprocess.Popen(
        ["ip", "netns", "exec", ns, sys.executable, "-c", TUN_INJECT, "25", "47010"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert injector.stdout is not None and injector.stdin is not None
        assert injector.stdout.readline().strip() == "ready"
        source = LiveSource("tun0", "udp dst port 47010", SETTINGS, netns=ns)

        def inject() -> None:
            injector.stdin.write("go\n")
            injector.stdin.flush()
            assert injector.stdout.readline().strip() == "sent"

        batches = await capture_while(source, inject)
        frames = [b.frame(i) for b in batches for i in range(len(b))]
        assert len(frames) == 25 and frames[0][0] == 0x45 and frames[0][9] == 17
        assert {int(t) for b in batches for t in b.linktype} == {LINKTYPE_RAW}
    finally:
        injector.kill()
        injector.wait()
        subprocess.run(["ip", "netns", "del", ns], check=False)
