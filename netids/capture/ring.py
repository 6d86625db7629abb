"""The TPACKET_V3 receive ring of an AF_PACKET socket, and walking its blocks into batches.

The kernel fills ring blocks and stamps each frame; :class:`Ring` copies a filled block out
and gives it back, :func:`walk_block` reads its frame headers with one ``struct`` call per
frame (no dissection), and :class:`Pending` joins the parts of blocks into one
:class:`FrameBatch`.
"""

from __future__ import annotations

import ctypes
import functools
import mmap
import os
import socket
import struct
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from netids.capture.interfaces import ARPHRD_LOOPBACK, LINKTYPE_UNKNOWN, LINKTYPES
from netids.config import CaptureSettings
from netids.detect.frames import FrameBatch

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
# tpacket3_hdr (48 bytes) and the sockaddr_ll that follows it, in one read
_FRAME = struct.Struct("=IIIIIIHHIIHH8xHHiHBB")
# tpacket_block_desc: version, offset_to_priv, then tpacket_hdr_v1
_BLOCK = struct.Struct("=IIIIII")


class Ring:
    """The receive ring: ``block_nr`` blocks the kernel fills and we give back."""

    def __init__(self, sock: socket.socket, settings: CaptureSettings) -> None:
        page = mmap.PAGESIZE
        self.block_size = 1 << 20  # 1 MiB holds any frame, even a 64 KiB GSO one
        self.block_nr = max(4, settings.rcvbuf_bytes // self.block_size)
        frame_size = 2048
        frame_nr = self.block_size // frame_size * self.block_nr
        tov_ms = max(1, min(int(settings.batch_timeout * 1000 / 2), 100))
        assert self.block_size % page == 0
        setsockopt_int(sock, PACKET_VERSION, TPACKET_V3)
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
class Part:
    """Frames of one block: the block's bytes plus per-frame columns into it."""

    buf: bytes
    start: list[int]
    caplen: list[int]
    wirelen: list[int]
    ts: list[float]
    linktype: list[int]

    def split(self, k: int) -> tuple[Part, Part | None]:
        """The first ``k`` frames, and the rest (None when nothing is left)."""
        if len(self.start) <= k:
            return self, None
        head = Part(
            self.buf,
            self.start[:k],
            self.caplen[:k],
            self.wirelen[:k],
            self.ts[:k],
            self.linktype[:k],
        )
        tail = Part(
            self.buf,
            self.start[k:],
            self.caplen[k:],
            self.wirelen[k:],
            self.ts[k:],
            self.linktype[k:],
        )
        return head, tail


class Pending:
    """Parts collected for the next batch."""

    def __init__(self) -> None:
        self.parts: list[Part] = []
        self.n = 0

    def add(self, part: Part) -> None:
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


def walk_block(block: bytes, snaplen: int, batch_size: int, ignore_lo_out: bool) -> list[Part]:
    """Per-frame columns of one ring block, in parts of at most ``batch_size`` frames.

    The kernel strips 802.1Q tags into the frame header; like libpcap, tagged frames get their
    tag back (those frames are copied into an extra area after the block).
    """
    _, _, _, num, first, _ = _BLOCK.unpack_from(block, 0)
    unpack, linktypes = _FRAME.unpack_from, LINKTYPES
    parts, off, extra = [], first, bytearray()
    p = Part(block, [], [], [], [], [])
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
                p = Part(block, [], [], [], [], [])
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


def bind(sock: socket.socket, ifindex: int) -> None:
    """Bind to one interface, or to all with ifindex 0 (Python's bind() wants a name)."""
    addr = struct.pack(
        "=HHiHBB8s", socket.AF_PACKET, socket.htons(ETH_P_ALL), ifindex, 0, 0, 0, b""
    )
    if _libc().bind(sock.fileno(), addr, len(addr)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def setsockopt_int(sock: socket.socket, opt: int, value: int) -> None:
    sock.setsockopt(SOL_PACKET, opt, struct.pack("i", value))


def _concat(lists: Iterable[list]) -> list:
    out: list = []
    for x in lists:
        out.extend(x)
    return out


@functools.cache
def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)
