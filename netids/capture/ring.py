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
# tpacket3_hdr (48 bytes) and the sockaddr_ll that follows it (struct "=IIIIIIHHIIHH8xHHiHBB")
_HEADER = np.dtype({
    "names": ["next", "sec", "nsec", "snaplen", "len", "status", "mac", "tci", "tpid",
              "hatype", "pkttype"],
    "formats": ["=u4", "=u4", "=u4", "=u4", "=u4", "=u4", "=u2", "=u4", "=u2", "=u2", "u1"],
    "offsets": [0, 4, 8, 12, 16, 20, 24, 32, 36, 56, 58],
    "itemsize": 60,
})
_NEXT = struct.Struct("=I")
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
    start: np.ndarray  # int64
    caplen: np.ndarray  # int32
    wirelen: np.ndarray  # int32
    ts: np.ndarray  # float64
    linktype: np.ndarray  # uint16

    def __len__(self) -> int:
        return len(self.start)

    def split(self, k: int) -> tuple[Part, Part | None]:
        """The first ``k`` frames, and the rest (None when nothing is left)."""
        if len(self.start) <= k:
            return self, None
        head, tail = slice(None, k), slice(k, None)
        return self._rows(head), self._rows(tail)

    def _rows(self, rows: slice) -> Part:
        return Part(self.buf, self.start[rows], self.caplen[rows], self.wirelen[rows],
                    self.ts[rows], self.linktype[rows])


class Pending:
    """Parts collected for the next batch."""

    def __init__(self) -> None:
        self.parts: list[Part] = []
        self.n = 0

    def add(self, part: Part) -> None:
        self.parts.append(part)
        self.n += len(part)

    def batch(self, first_index: int) -> FrameBatch:
        parts = self.parts
        if len(parts) == 1:
            p = parts[0]
            buf, start = np.frombuffer(p.buf, dtype=np.uint8), p.start
        else:
            buf = np.frombuffer(b"".join(p.buf for p in parts), dtype=np.uint8)
            base = np.cumsum([0] + [len(p.buf) for p in parts[:-1]])
            start = np.concatenate([p.start + b for p, b in zip(parts, base, strict=True)])
        return FrameBatch(
            buf=buf,
            start=start,
            caplen=np.concatenate([p.caplen for p in parts]),
            wirelen=np.concatenate([p.wirelen for p in parts]),
            ts=np.concatenate([p.ts for p in parts]),
            linktype=np.concatenate([p.linktype for p in parts]),
            first_index=first_index,
        )


def walk_block(block: bytes, snaplen: int, batch_size: int, ignore_lo_out: bool) -> list[Part]:
    """Per-frame columns of one ring block, in parts of at most ``batch_size`` frames.

    Only the frame offsets are followed one by one in Python (each header says where the next
    begins); the headers are then read as numpy columns, so a frame costs a fraction of a
    microsecond and the capture thread holds the GIL briefly. The kernel strips 802.1Q tags
    into the frame header; like libpcap, tagged frames get their tag back (those frames are
    copied into an extra area after the block).
    """
    _, _, _, num, first, _ = _BLOCK.unpack_from(block, 0)
    offsets, off, next_of = [], first, _NEXT.unpack_from
    for _ in range(num):
        offsets.append(off)
        nxt = next_of(block, off)[0]
        if not nxt:
            break
        off += nxt
    raw = np.frombuffer(block, dtype=np.uint8)
    at = np.array(offsets, dtype=np.int64)
    hdr = raw[at[:, None] + np.arange(_HEADER.itemsize)].view(_HEADER).reshape(-1)
    if ignore_lo_out:
        keep = ~((hdr["pkttype"] == PACKET_OUTGOING) & (hdr["hatype"] == ARPHRD_LOOPBACK))
        hdr, at = hdr[keep], at[keep]
    start = at + hdr["mac"]
    cap = hdr["snaplen"].astype(np.int64)
    wire = hdr["len"].astype(np.int64)
    buf = block
    tagged = np.flatnonzero((hdr["status"] & TP_STATUS_VLAN_VALID != 0) & (hdr["hatype"] == 1)
                            & (cap >= 12))
    if len(tagged):
        buf = _put_tags_back(block, hdr, tagged, start, cap, wire)
    ts = hdr["sec"] + hdr["nsec"] * 1e-9
    linktype = np.full(len(hdr), LINKTYPE_UNKNOWN, dtype=np.uint16)
    for hatype in np.unique(hdr["hatype"]).tolist():
        linktype[hdr["hatype"] == hatype] = LINKTYPES.get(hatype, LINKTYPE_UNKNOWN)
    whole = Part(buf, start, np.minimum(cap, snaplen).astype(np.int32), wire.astype(np.int32),
                 ts, linktype)
    parts = []
    rest: Part | None = whole
    while rest is not None and len(rest):
        head, rest = rest.split(batch_size)
        parts.append(head)
    return parts


def _put_tags_back(block: bytes, hdr: np.ndarray, tagged: np.ndarray, start: np.ndarray,
                   cap: np.ndarray, wire: np.ndarray) -> bytes:
    """Copy each tagged frame, its 802.1Q tag put back after the MAC addresses, after the
    block; ``start``, ``cap`` and ``wire`` are updated to point there."""
    extra = bytearray()
    for i in tagged.tolist():
        tpid = int(hdr["tpid"][i]) if hdr["status"][i] & TP_STATUS_VLAN_TPID_VALID else 0x8100
        tag = struct.pack("!HH", tpid, int(hdr["tci"][i]) & 0xFFFF)
        s, c = int(start[i]), int(cap[i])
        start[i] = len(block) + len(extra)
        extra += block[s : s + 12] + tag + block[s + 12 : s + c]
        cap[i], wire[i] = c + 4, wire[i] + 4
    return block + bytes(extra)


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


@functools.cache
def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)
