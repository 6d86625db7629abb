"""Capture sources: live frames from a network interface, recorded frames from a file.

Both sources have one async API, so the pipeline runs the same code for live and recorded
input::

    source = LiveSource("eth0", "tcp or udp", settings.capture)   # or FileSource(path, ...)
    source.start()
    try:
        async for batch in source.batches():   # FrameBatch, <= batch_size frames
            ...
    finally:
        source.stop()

The live source reads a TPACKET_V3 memory-mapped ring of an AF_PACKET socket in its own
thread. The kernel applies the BPF filter and stamps each frame; the thread copies whole ring
blocks out, walks their frame headers with one ``struct`` call per frame (no dissection) and
hands :class:`FrameBatch` es to the event loop with ``call_soon_threadsafe``. At most
``queue_batches`` batches are in flight: when the consumer falls behind the thread drops the
newest batch and counts it, it never blocks and memory stays bounded.

On one interface the filter is compiled by libpcap for that live interface (its link type,
VLAN tags kept out of band by the kernel), as tcpdump does. Known limit: on all interfaces at
once it is compiled for Ethernet, so it does not match frames of raw-IP interfaces (tun,
wireguard), and ``vlan`` matches nothing there.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import errno
import fcntl
import itertools
import json
import logging
import mmap
import os
import select
import socket
import struct
import subprocess
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from netids.capture.pcapfile import CaptureFileError, read_batches
from netids.config import CaptureSettings
from netids.detect.frames import LINKTYPE_ETHERNET, LINKTYPE_RAW, FrameBatch

log = logging.getLogger(__name__)

PERMISSION_HINT = (
    "capture needs root or CAP_NET_RAW: run as root, or "
    "`sudo setcap cap_net_raw,cap_net_admin+eip $(readlink -f $(which python3))`"
)
LINKTYPE_IEEE802_11_RADIOTAP = 127
LINKTYPE_UNKNOWN = 0xFFFF  # a link layer the decoder is not expected to understand


class CaptureError(Exception):
    """A capture that cannot start or stopped; the message is meant for the user as it is."""


@dataclass(frozen=True, slots=True)
class CaptureStats:
    """Counters of one capture session since ``start()``."""

    packets: int = 0  # frames handed on (or dropped by the queue)
    bytes: int = 0  # wire bytes of those frames
    kernel_drops: int = 0  # frames the kernel could not put in the ring (reader too slow)
    queue_drops: int = 0  # frames dropped because the consumer fell behind
    queue_dropped_batches: int = 0
    batches: int = 0  # batches handed to the consumer


@dataclass(frozen=True, slots=True)
class Interface:
    """A network interface as the UI's picker shows it."""

    name: str
    index: int
    mac: str
    up: bool
    linktype: int  # LINKTYPE_* its frames carry
    addresses: tuple[str, ...] = field(default=())


# --------------------------------------------------------------------------- live capture


class LiveSource:
    """Frames from an AF_PACKET socket on ``interface`` (``None``: every interface).

    ``bpf`` is a tcpdump-syntax filter applied in the kernel; an invalid one raises
    :class:`CaptureError` here, before anything is opened. ``netns`` names a network
    namespace (``ip netns`` name or a path like ``/proc/PID/ns/net``) to capture in.
    """

    def __init__(
        self,
        interface: str | None,
        bpf: str | None,
        settings: CaptureSettings,
        *,
        netns: str | None = None,
        promisc: bool = True,
    ) -> None:
        self.interface = None if interface in (None, "", "any") else interface
        self.bpf = bpf.strip() if bpf and bpf.strip() else None
        self.settings = settings
        self.netns = netns
        self.promisc = promisc
        self._program = compile_filter(self.bpf) if self.bpf else None
        self._sock: socket.socket | None = None
        self._ring: _Ring | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: asyncio.Queue[FrameBatch | None] | None = None
        self._slots = threading.BoundedSemaphore(max(1, settings.queue_batches))
        self._lock = threading.Lock()
        self._packets = self._bytes = self._kdrops = 0
        self._qdrops = self._qdrop_batches = self._batches = 0
        self._index = 0

    # -- public API

    def start(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        """Open the socket and start the capture thread; raises :class:`CaptureError`."""
        if self._thread is not None:
            return
        self._loop = loop or asyncio.get_running_loop()
        self._queue = asyncio.Queue()
        self._slots = threading.BoundedSemaphore(max(1, self.settings.queue_batches))
        self._stop.clear()
        self._error = None
        self._sock, self._ring = _in_netns(self.netns, self._open)
        self._thread = threading.Thread(target=self._run_catch, name="netids-capture", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread and close the socket; ``batches()`` then ends. Idempotent."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout=5)
        if self._sock is not None:
            self._poll_kernel_drops()
        if self._ring is not None:
            self._ring.close()
            self._ring = None
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    async def batches(self) -> AsyncIterator[FrameBatch]:
        """Batches in arrival order until ``stop()``; a thread failure raises CaptureError."""
        if self._queue is None:
            raise CaptureError("capture not started: call start() first")
        queue = self._queue
        while True:
            batch = await queue.get()
            if batch is None:
                queue.put_nowait(None)  # a second iteration ends too
                if self._error is not None:
                    raise _as_capture_error(self._error, self.interface)
                return
            self._slots.release()
            yield batch

    def stats(self) -> CaptureStats:
        if self._sock is not None:
            self._poll_kernel_drops()
        with self._lock:
            return CaptureStats(
                packets=self._packets,
                bytes=self._bytes,
                kernel_drops=self._kdrops,
                queue_drops=self._qdrops,
                queue_dropped_batches=self._qdrop_batches,
                batches=self._batches,
            )

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # -- socket set-up (runs in the target namespace)

    def _open(self) -> tuple[socket.socket, _Ring]:
        try:
            # protocol 0: nothing arrives until bind, so no frame slips past the filter
            sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
        except PermissionError as exc:
            raise CaptureError(PERMISSION_HINT) from exc
        try:
            ifindex = 0
            if self.interface is not None:
                try:
                    ifindex = socket.if_nametoindex(self.interface)
                except OSError as exc:
                    raise CaptureError(f"no network interface named {self.interface!r}") from exc
            hwtype = _hwtype(sock, self.interface) if self.interface else -1
            program = self._program
            if self.bpf and self.interface:  # libpcap's program for this very interface
                program = _compile_live(self.bpf, self.interface) or program
                if program is self._program and linktype_of(hwtype) == LINKTYPE_RAW:
                    program = compile_filter(self.bpf, LINKTYPE_RAW)  # tun: frames start at IP
            if program is not None:
                sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, program.fprog)
            if hwtype == ARPHRD_LOOPBACK:  # lo shows every packet twice: keep the incoming copy
                _setsockopt_int(sock, PACKET_IGNORE_OUTGOING, 1)
            ring = _Ring(sock, self.settings)
            _bind(sock, ifindex)
            if self.promisc and ifindex:
                mreq = struct.pack("iHH8s", ifindex, PACKET_MR_PROMISC, 0, b"")
                sock.setsockopt(SOL_PACKET, PACKET_ADD_MEMBERSHIP, mreq)
            self._read_kernel_stats(sock)  # reset the counters: count from here
            return sock, ring
        except CaptureError:
            sock.close()
            raise
        except OSError as exc:
            sock.close()
            raise _as_capture_error(exc, self.interface) from exc

    # -- capture thread

    def _run_catch(self) -> None:
        try:
            self._run()
        except BaseException as exc:  # noqa: BLE001 - kept and re-raised to the consumer
            log.warning("capture stopped: %s", exc)
            self._error = exc
        finally:
            self._deliver(None)

    def _run(self) -> None:
        assert self._sock is not None and self._ring is not None
        ring, settings = self._ring, self.settings
        poller = select.poll()
        poller.register(self._sock.fileno(), select.POLLIN | select.POLLERR)
        pending = _Pending()
        deadline = time.monotonic() + settings.batch_timeout
        ignore_lo_out = self.interface is None  # on "all interfaces" lo shows both directions
        while not self._stop.is_set():
            block = ring.next_block()
            if block is None:
                wait = max(0.0, deadline - time.monotonic()) if pending.n else 0.1
                events = poller.poll(min(wait, 0.1) * 1000)
                for _, ev in events:
                    if ev & select.POLLERR:
                        err = self._sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                        if err:
                            raise OSError(err, os.strerror(err))
                if pending.n and time.monotonic() >= deadline:
                    self._flush(pending)
                    pending = _Pending()
                continue
            if not pending.n:
                deadline = time.monotonic() + settings.batch_timeout
            pending, deadline = self._take(block, pending, deadline, ignore_lo_out)
            if pending.n and time.monotonic() >= deadline:
                self._flush(pending)
                pending = _Pending()
        for _ in range(ring.block_nr):  # on stop: what the kernel already handed over
            block = ring.next_block()
            if block is None:
                break
            pending, deadline = self._take(block, pending, deadline, ignore_lo_out)
        if pending.n:
            self._flush(pending)

    def _take(
        self, block: bytes, pending: _Pending, deadline: float, ignore_lo_out: bool
    ) -> tuple[_Pending, float]:
        """Add a block's frames to ``pending``, flushing every full batch."""
        size = self.settings.batch_size
        for whole in _walk_block(block, self.settings.snaplen, size, ignore_lo_out):
            rest: _Part | None = whole
            while rest is not None:
                head, rest = rest.split(size - pending.n)
                pending.add(head)
                if pending.n >= size:
                    self._flush(pending)
                    pending = _Pending()
                    deadline = time.monotonic() + self.settings.batch_timeout
        return pending, deadline

    def _flush(self, pending: _Pending) -> None:
        batch = pending.batch(self._index)
        n = len(batch)
        self._index += n
        nbytes = int(batch.wirelen.sum())
        ok = self._slots.acquire(blocking=False)
        with self._lock:
            self._packets += n
            self._bytes += nbytes
            if not ok:
                self._qdrops += n
                self._qdrop_batches += 1
            else:
                self._batches += 1
        if ok:
            self._deliver(batch)

    def _deliver(self, batch: FrameBatch | None) -> None:
        loop, queue = self._loop, self._queue
        if loop is None or queue is None:
            return
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody listens
            loop.call_soon_threadsafe(queue.put_nowait, batch)

    # -- kernel counters

    def _poll_kernel_drops(self) -> None:
        sock = self._sock
        if sock is None:
            return
        try:
            drops = self._read_kernel_stats(sock)
        except OSError:
            return
        with self._lock:
            self._kdrops += drops

    @staticmethod
    def _read_kernel_stats(sock: socket.socket) -> int:
        """Frames dropped since the last call (reading resets the kernel's counters)."""
        raw = sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, 12)
        _packets, drops, _freeze = struct.unpack("III", raw)
        return int(drops)


# --------------------------------------------------------------------------- file source


class FileSource:
    """Frames of a pcap or pcapng file with the same async API as :class:`LiveSource`.

    With ``realtime`` the batches are paced by the packets' timestamps (times ``speed``),
    so a recording plays back like live traffic; otherwise they come as fast as consumed.
    """

    def __init__(
        self,
        path: str | Path,
        settings: CaptureSettings,
        realtime: bool = False,
        *,
        speed: float = 1.0,
        max_gap: float | None = None,
    ) -> None:
        self.path = Path(path)
        self.settings = settings
        self.realtime = realtime
        self.speed = speed
        self.max_gap = max_gap  # seconds: longer idle gaps of the file are cut to this
        self._stopped = False
        self._started = False
        self._packets = self._bytes = self._batches = 0

    def start(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        if not self.path.is_file():
            raise CaptureError(f"{self.path}: no such capture file")
        self._started, self._stopped = True, False

    def stop(self) -> None:
        self._stopped = True

    @property
    def running(self) -> bool:
        return self._started and not self._stopped

    def stats(self) -> CaptureStats:
        return CaptureStats(packets=self._packets, bytes=self._bytes, batches=self._batches)

    async def batches(self) -> AsyncIterator[FrameBatch]:
        if not self._started:
            raise CaptureError("capture not started: call start() first")
        it = read_batches(self.path, self.settings.batch_size)
        clock = _Pacer(self.speed, self.max_gap) if self.realtime else None
        try:
            while not self._stopped:
                try:
                    batch = await asyncio.to_thread(next, it, None)
                except CaptureFileError as exc:
                    raise CaptureError(str(exc)) from exc
                if batch is None:
                    return
                parts = (
                    [batch] if clock is None else _time_slices(batch, self.settings.batch_timeout)
                )
                for part in parts:
                    if clock is not None:
                        await clock.wait_until(float(part.ts[-1]))
                    if self._stopped:
                        return
                    self._packets += len(part)
                    self._bytes += int(part.wirelen.sum())
                    self._batches += 1
                    yield part
        finally:
            self._stopped = True


class _Pacer:
    """Sleeps so that file time advances like wall-clock time (idle gaps optionally cut)."""

    def __init__(self, speed: float, max_gap: float | None) -> None:
        self.speed = speed if speed > 0 else 1.0
        self.max_gap = max_gap
        self.origin: float | None = None  # (file time) at wall time self.start
        self.start = 0.0
        self.last = 0.0

    async def wait_until(self, ts: float) -> None:
        now = time.monotonic()
        if self.origin is None:
            self.origin, self.start, self.last = ts, now, ts
            return
        if self.max_gap is not None and ts - self.last > self.max_gap:
            self.origin += ts - self.last - self.max_gap  # shift the timeline past the gap
        self.last = max(self.last, ts)
        delay = (ts - self.origin) / self.speed - (now - self.start)
        if delay > 0:
            await asyncio.sleep(delay)


def _time_slices(batch: FrameBatch, window: float) -> list[FrameBatch]:
    """Split a batch where its timestamps cross multiples of ``window`` seconds."""
    if len(batch) == 0:
        return []
    bucket = np.floor(batch.ts / max(window, 1e-3))
    cuts = np.flatnonzero(np.diff(bucket) != 0) + 1
    if len(cuts) == 0:
        return [batch]
    bounds = [0, *cuts.tolist(), len(batch)]
    return [_slice(batch, a, b) for a, b in itertools.pairwise(bounds)]


def _slice(batch: FrameBatch, a: int, b: int) -> FrameBatch:
    return FrameBatch(
        buf=batch.buf,
        start=batch.start[a:b],
        caplen=batch.caplen[a:b],
        wirelen=batch.wirelen[a:b],
        ts=batch.ts[a:b],
        linktype=batch.linktype[a:b],
        first_index=batch.first_index + a,
    )


# --------------------------------------------------------------------------- interfaces


def list_interfaces() -> list[Interface]:
    """The interfaces of this network namespace, for a picker (no root needed)."""
    addresses = _addresses()
    out = []
    for index, name in sorted(socket.if_nameindex()):
        base = Path("/sys/class/net") / name
        mac = _read(base / "address")
        flags = int(_read(base / "flags") or "0", 16)
        out.append(
            Interface(
                name=name,
                index=index,
                mac=mac,
                up=bool(flags & 0x1),  # IFF_UP
                linktype=linktype_of(int(_read(base / "type") or "1")),
                addresses=tuple(addresses.get(name, ())),
            )
        )
    return out


def linktype_of(arphrd: int) -> int:
    """LINKTYPE_* of the frames an AF_PACKET SOCK_RAW socket reads from a device type.

    >>> linktype_of(1), linktype_of(772), linktype_of(65534)
    (1, 1, 101)
    """
    return _LINKTYPES.get(arphrd, LINKTYPE_UNKNOWN)


def _addresses() -> dict[str, list[str]]:
    try:
        out = subprocess.run(
            ["ip", "-j", "addr", "show"], capture_output=True, text=True, timeout=2, check=True
        ).stdout
        return {
            item["ifname"]: [f"{a['local']}/{a['prefixlen']}" for a in item.get("addr_info", [])]
            for item in json.loads(out)
        }
    except (OSError, subprocess.SubprocessError, ValueError, KeyError):
        return {}


def _read(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return ""


def _hwtype(sock: socket.socket, name: str) -> int:
    """ARPHRD_* type of interface ``name`` in the socket's namespace (SIOCGIFHWADDR)."""
    try:
        ifreq = fcntl.ioctl(sock.fileno(), 0x8927, struct.pack("16s16x", name.encode()[:15]))
    except OSError:
        return -1
    return int(struct.unpack_from("H", ifreq, 16)[0])


# --------------------------------------------------------------------------- BPF


class _BpfProgram:
    """A compiled classic BPF program, kept alive as long as its ``sock_fprog`` is used."""

    def __init__(self, insns: bytes, count: int) -> None:
        self._buf = ctypes.create_string_buffer(insns, len(insns))
        self.count = count
        self.fprog = struct.pack("HL", count, ctypes.addressof(self._buf))


def compile_filter(expr: str, linktype: int = LINKTYPE_ETHERNET) -> _BpfProgram:
    """Compile a tcpdump-syntax filter with libpcap (through scapy); no root needed.

    Frames of every interface are matched as Ethernet frames (``lo`` included), or as
    raw IP when ``linktype`` is LINKTYPE_RAW.
    """
    try:
        from scapy.arch.common import compile_filter as scapy_compile
        from scapy.error import Scapy_Exception
    except ImportError as exc:  # pragma: no cover - scapy is a dependency
        raise CaptureError("capture filters need scapy installed") from exc
    try:
        prog = scapy_compile(expr, linktype=linktype)
    except ImportError as exc:
        raise CaptureError(
            "cannot compile capture filters: libpcap is not installed (apt install libpcap0.8)"
        ) from exc
    except Scapy_Exception as exc:
        text = str(exc)
        reason = text[text.rfind("(") + 1 : -1] if text.endswith(")") else text
        raise CaptureError(f"invalid capture filter {expr!r}: {reason}") from exc
    count = int(prog.bf_len)
    insns = ctypes.string_at(prog.bf_insns, count * 8)
    try:
        from scapy.libs.winpcapy import pcap_freecode

        pcap_freecode(ctypes.byref(prog))
    except Exception:
        log.debug("pcap_freecode failed", exc_info=True)
    return _BpfProgram(insns, count)


def _compile_live(expr: str, interface: str) -> _BpfProgram | None:
    """libpcap's program for a live interface of this namespace, or None if it cannot open it.

    Unlike a program compiled for a link type alone, it knows the interface's real link type
    and that the kernel keeps VLAN tags out of the frame (so ``vlan`` filters work).
    """
    try:
        from scapy.libs.structures import bpf_program
        from scapy.libs.winpcapy import (
            PCAP_ERRBUF_SIZE,
            pcap_close,
            pcap_compile,
            pcap_freecode,
            pcap_open_live,
        )
    except (ImportError, OSError):
        return None
    err = ctypes.create_string_buffer(PCAP_ERRBUF_SIZE)
    pcap = pcap_open_live(interface.encode(), 65535, 0, 0, err)
    if not pcap:
        return None
    try:
        prog = bpf_program()
        if pcap_compile(pcap, ctypes.byref(prog), expr.encode(), 1, -1) == -1:
            return None
        count = int(prog.bf_len)
        insns = ctypes.string_at(prog.bf_insns, count * 8)
        pcap_freecode(ctypes.byref(prog))
        return _BpfProgram(insns, count)
    finally:
        pcap_close(pcap)


# --------------------------------------------------------------------------- TPACKET_V3 ring

ETH_P_ALL = 0x0003
SOL_PACKET = 263
PACKET_ADD_MEMBERSHIP = 1
PACKET_MR_PROMISC = 1
PACKET_RX_RING = 5
PACKET_STATISTICS = 6
PACKET_VERSION = 10
PACKET_IGNORE_OUTGOING = 23
TPACKET_V3 = 2
SO_ATTACH_FILTER = 26
TP_STATUS_KERNEL = 0
TP_STATUS_USER = 1
TP_STATUS_VLAN_VALID = 0x10
TP_STATUS_VLAN_TPID_VALID = 0x40
PACKET_OUTGOING = 4
ARPHRD_LOOPBACK = 772
_LINKTYPES = {
    1: LINKTYPE_ETHERNET,  # ARPHRD_ETHER
    ARPHRD_LOOPBACK: LINKTYPE_ETHERNET,  # lo carries Ethernet headers of zeros
    65534: LINKTYPE_RAW,  # ARPHRD_NONE: tun, wireguard
    768: LINKTYPE_RAW,  # ARPHRD_TUNNEL (ipip)
    776: LINKTYPE_RAW,  # ARPHRD_SIT
    778: LINKTYPE_RAW,  # ARPHRD_IPGRE
    823: LINKTYPE_RAW,  # ARPHRD_IP6GRE
    769: LINKTYPE_RAW,  # ARPHRD_TUNNEL6
    803: LINKTYPE_IEEE802_11_RADIOTAP,
}
# tpacket3_hdr (48 bytes) and the sockaddr_ll that follows it, in one read
_FRAME = struct.Struct("=IIIIIIHHIIHH8xHHiHBB")
# tpacket_block_desc: version, offset_to_priv, then tpacket_hdr_v1
_BLOCK = struct.Struct("=IIIIII")


class _Ring:
    """The receive ring: ``block_nr`` blocks the kernel fills and we give back."""

    def __init__(self, sock: socket.socket, settings: CaptureSettings) -> None:
        page = mmap.PAGESIZE
        self.block_size = 1 << 20  # 1 MiB holds any frame, even a 64 KiB GSO one
        self.block_nr = max(4, settings.rcvbuf_bytes // self.block_size)
        frame_size = 2048
        frame_nr = self.block_size // frame_size * self.block_nr
        tov_ms = max(1, min(int(settings.batch_timeout * 1000 / 2), 100))
        assert self.block_size % page == 0
        _setsockopt_int(sock, PACKET_VERSION, TPACKET_V3)
        req = struct.pack(
            "IIIIIII", self.block_size, self.block_nr, frame_size, frame_nr, tov_ms, 0, 0
        )
        sock.setsockopt(SOL_PACKET, PACKET_RX_RING, req)
        self.map = mmap.mmap(
            sock.fileno(),
            self.block_size * self.block_nr,
            mmap.MAP_SHARED,
            mmap.PROT_READ | mmap.PROT_WRITE,
        )
        self.view = memoryview(self.map)
        self.current = 0

    def next_block(self) -> bytes | None:
        """Copy the next filled block out and give it back to the kernel, or None."""
        off = self.current * self.block_size
        status = struct.unpack_from("=I", self.map, off + 8)[0]
        if not status & TP_STATUS_USER:
            return None
        blk_len = struct.unpack_from("=I", self.map, off + 20)[0]
        data = bytes(self.view[off : off + blk_len])
        struct.pack_into("=I", self.map, off + 8, TP_STATUS_KERNEL)
        self.current = (self.current + 1) % self.block_nr
        return data

    def close(self) -> None:
        self.view.release()
        self.map.close()


@dataclass(slots=True)
class _Part:
    """Frames of one block: the block's bytes plus per-frame columns into it."""

    buf: bytes
    start: list[int]
    caplen: list[int]
    wirelen: list[int]
    ts: list[float]
    linktype: list[int]

    def split(self, k: int) -> tuple[_Part, _Part | None]:
        """The first ``k`` frames, and the rest (None when nothing is left)."""
        if len(self.start) <= k:
            return self, None
        head = _Part(
            self.buf,
            self.start[:k],
            self.caplen[:k],
            self.wirelen[:k],
            self.ts[:k],
            self.linktype[:k],
        )
        tail = _Part(
            self.buf,
            self.start[k:],
            self.caplen[k:],
            self.wirelen[k:],
            self.ts[k:],
            self.linktype[k:],
        )
        return head, tail


class _Pending:
    """Parts collected for the next batch."""

    def __init__(self) -> None:
        self.parts: list[_Part] = []
        self.n = 0

    def add(self, part: _Part) -> None:
        self.parts.append(part)
        self.n += len(part.start)

    def batch(self, first_index: int) -> FrameBatch:
        parts = self.parts
        if len(parts) == 1:
            p = parts[0]
            buf, start = np.frombuffer(p.buf, dtype=np.uint8), np.array(p.start, dtype=np.int64)
        else:
            buf = np.frombuffer(b"".join(p.buf for p in parts), dtype=np.uint8)
            base, starts = 0, []
            for p in parts:
                starts.append(np.array(p.start, dtype=np.int64) + base)
                base += len(p.buf)
            start = np.concatenate(starts)
        cat = _concat
        return FrameBatch(
            buf=buf,
            start=start,
            caplen=np.array(cat(p.caplen for p in parts), dtype=np.int32),
            wirelen=np.array(cat(p.wirelen for p in parts), dtype=np.int32),
            ts=np.array(cat(p.ts for p in parts), dtype=np.float64),
            linktype=np.array(cat(p.linktype for p in parts), dtype=np.uint16),
            first_index=first_index,
        )


def _concat(lists: object) -> list:
    out: list = []
    for x in lists:  # type: ignore[attr-defined]
        out.extend(x)
    return out


def _walk_block(block: bytes, snaplen: int, batch_size: int, ignore_lo_out: bool) -> list[_Part]:
    """Per-frame columns of one ring block, in parts of at most ``batch_size`` frames.

    The kernel strips 802.1Q tags into the frame header; like libpcap, tagged frames get their
    tag back (those frames are copied into an extra area after the block).
    """
    _, _, _, num, first, _ = _BLOCK.unpack_from(block, 0)
    unpack, linktypes = _FRAME.unpack_from, _LINKTYPES
    parts, off, extra = [], first, bytearray()
    p = _Part(block, [], [], [], [], [])
    for _ in range(num):
        (nxt, sec, nsec, cap, wire, status, mac, _net, _hash, tci, tpid, _pad,
         _fam, _proto, _ifi, hatype, pkttype, _hl) = unpack(block, off)  # fmt: skip
        if not (ignore_lo_out and pkttype == PACKET_OUTGOING and hatype == ARPHRD_LOOPBACK):
            start = off + mac
            if status & TP_STATUS_VLAN_VALID and hatype == 1 and cap >= 12:
                tag = struct.pack(
                    "!HH", tpid if status & TP_STATUS_VLAN_TPID_VALID else 0x8100, tci
                )
                frame = block[start : start + 12] + tag + block[start + 12 : start + cap]
                start = len(block) + len(extra)
                extra += frame
                cap, wire = cap + 4, wire + 4
            p.start.append(start)
            p.caplen.append(min(cap, snaplen))
            p.wirelen.append(wire)
            p.ts.append(sec + nsec * 1e-9)
            p.linktype.append(linktypes.get(hatype, LINKTYPE_UNKNOWN))
            if len(p.start) >= batch_size:
                parts.append(p)
                p = _Part(block, [], [], [], [], [])
        if not nxt:
            break
        off += nxt
    if p.start:
        parts.append(p)
    if extra:
        buf = block + bytes(extra)
        for part in parts:
            part.buf = buf
    return parts


# --------------------------------------------------------------------------- helpers


def _bind(sock: socket.socket, ifindex: int) -> None:
    """Bind to one interface, or to all with ifindex 0 (Python's bind() wants a name)."""
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    addr = struct.pack(
        "=HHiHBB8s", socket.AF_PACKET, socket.htons(ETH_P_ALL), ifindex, 0, 0, 0, b""
    )
    if _libc.bind(sock.fileno(), addr, len(addr)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def _setsockopt_int(sock: socket.socket, opt: int, value: int) -> None:
    sock.setsockopt(SOL_PACKET, opt, struct.pack("i", value))


def _as_capture_error(exc: BaseException, interface: str | None) -> CaptureError:
    if isinstance(exc, CaptureError):
        return exc
    where = f"interface {interface!r}" if interface else "all interfaces"
    if isinstance(exc, PermissionError):
        return CaptureError(PERMISSION_HINT)
    if isinstance(exc, OSError) and exc.errno in (errno.ENETDOWN, errno.ENODEV, errno.ENXIO):
        return CaptureError(f"capture stopped: {where} went down or vanished ({exc.strerror})")
    if isinstance(exc, OSError):
        return CaptureError(f"capture on {where} failed: {exc.strerror or exc}")
    return CaptureError(f"capture on {where} failed: {exc!r}")


_libc = None


def _in_netns(
    netns: str | None, fn: Callable[[], tuple[socket.socket, _Ring]]
) -> tuple[socket.socket, _Ring]:
    """Run ``fn`` in network namespace ``netns`` (in a short-lived thread), or here."""
    if netns is None:
        return fn()
    path = netns if "/" in netns else f"/run/netns/{netns}"
    result: list[tuple[socket.socket, _Ring]] = []
    error: list[BaseException] = []

    def enter_and_run() -> None:
        global _libc
        try:
            if _libc is None:
                _libc = ctypes.CDLL(None, use_errno=True)
            try:
                fd = os.open(path, os.O_RDONLY)
            except OSError as exc:
                raise CaptureError(f"no network namespace {netns!r}") from exc
            try:
                if _libc.setns(fd, 0x40000000) != 0:  # CLONE_NEWNET
                    err = ctypes.get_errno()
                    if err == errno.EPERM:
                        raise CaptureError(PERMISSION_HINT)
                    raise CaptureError(
                        f"cannot enter network namespace {netns!r}: {os.strerror(err)}"
                    )
            finally:
                os.close(fd)
            result.append(fn())
        except BaseException as exc:  # noqa: BLE001 - handed to the caller
            error.append(exc)

    t = threading.Thread(target=enter_and_run, name="netids-netns")
    t.start()
    t.join()
    if error:
        raise error[0]
    return result[0]
