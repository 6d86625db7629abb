"""Live capture: frames from a network interface, read by a thread, handed to the event loop.

Both sources (this one and :class:`~netids.capture.files.FileSource`) have one async API, so
the pipeline runs the same code for live and recorded input::

    source = LiveSource("eth0", "tcp or udp", settings.capture)   # or FileSource(path, ...)
    source.start()
    try:
        async for batch in source.batches():   # FrameBatch, <= batch_size frames
            ...
    finally:
        source.stop()

The live source reads a TPACKET_V3 memory-mapped ring of an AF_PACKET socket
(:mod:`netids.capture.ring`) in its own thread and hands :class:`FrameBatch` es to the event
loop with ``call_soon_threadsafe``. At most ``queue_batches`` batches are in flight: when the
consumer falls behind the thread drops the newest batch and counts it, it never blocks and
memory stays bounded.

On one interface the filter is compiled by libpcap for that live interface (its link type,
VLAN tags kept out of band by the kernel), as tcpdump does. Known limit: on all interfaces at
once it is compiled for Ethernet, so it does not match frames of raw-IP interfaces (tun,
wireguard), and ``vlan`` matches nothing there.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import select
import socket
import struct
import threading
import time
from collections.abc import AsyncIterator

from netids.capture.bpf import compile_filter, compile_live
from netids.capture.interfaces import ARPHRD_LOOPBACK, hwtype, linktype_of
from netids.capture.netns import in_netns
from netids.capture.ring import (
    PACKET_ADD_MEMBERSHIP,
    PACKET_IGNORE_OUTGOING,
    PACKET_MR_PROMISC,
    PACKET_STATISTICS,
    SO_ATTACH_FILTER,
    SOL_PACKET,
    Part,
    Pending,
    Ring,
    bind,
    setsockopt_int,
    walk_block,
)
from netids.capture.source import PERMISSION_HINT, CaptureError, CaptureStats
from netids.config import CaptureSettings
from netids.detect.frames import LINKTYPE_RAW, FrameBatch

log = logging.getLogger(__name__)


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
        self._ring: Ring | None = None
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
        self._sock, self._ring = in_netns(self.netns, self._open)
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

    def waiting(self, limit: int) -> list[FrameBatch]:
        """Up to ``limit`` more batches that are already waiting, without waiting for any: a
        consumer that fell behind takes them in one go (call from the event loop)."""
        queue, out = self._queue, []
        while queue is not None and len(out) < limit and not queue.empty():
            batch = queue.get_nowait()
            if batch is None:  # the end, always last: batches() meets it next
                queue.put_nowait(None)
                break
            self._slots.release()
            out.append(batch)
        return out

    def backlog(self) -> int:
        """Batches captured and waiting for the consumer (call from the event loop)."""
        return self._queue.qsize() if self._queue is not None else 0

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

    def _open(self) -> tuple[socket.socket, Ring]:
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
            arphrd = hwtype(sock, self.interface) if self.interface else -1
            program = self._program
            if self.bpf and self.interface:  # libpcap's program for this very interface
                program = compile_live(self.bpf, self.interface) or program
                if program is self._program and linktype_of(arphrd) == LINKTYPE_RAW:
                    program = compile_filter(self.bpf, LINKTYPE_RAW)  # tun: frames start at IP
            if program is not None:
                sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, program.fprog)
            if arphrd == ARPHRD_LOOPBACK:  # lo shows every packet twice: keep the incoming copy
                setsockopt_int(sock, PACKET_IGNORE_OUTGOING, 1)
            ring = Ring(sock, self.settings)
            bind(sock, ifindex)
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
        pending = Pending()
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
                    pending = Pending()
                continue
            if not pending.n:
                deadline = time.monotonic() + settings.batch_timeout
            pending, deadline = self._take(block, pending, deadline, ignore_lo_out)
            if pending.n and time.monotonic() >= deadline:
                self._flush(pending)
                pending = Pending()
        for _ in range(ring.block_nr):  # on stop: what the kernel already handed over
            block = ring.next_block()
            if block is None:
                break
            pending, deadline = self._take(block, pending, deadline, ignore_lo_out)
        if pending.n:
            self._flush(pending)

    def _take(
        self, block: bytes, pending: Pending, deadline: float, ignore_lo_out: bool
    ) -> tuple[Pending, float]:
        """Add a block's frames to ``pending``, flushing every full batch."""
        size = self.settings.batch_size
        for whole in walk_block(block, self.settings.snaplen, size, ignore_lo_out):
            rest: Part | None = whole
            while rest is not None:
                head, rest = rest.split(size - pending.n)
                pending.add(head)
                if pending.n >= size:
                    self._flush(pending)
                    pending = Pending()
                    deadline = time.monotonic() + self.settings.batch_timeout
        return pending, deadline

    def _flush(self, pending: Pending) -> None:
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
