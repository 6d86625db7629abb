"""Streaming pcap and pcapng reader, and the pcap writer everything uses.

Files are read in chunks and handed on as :class:`FrameBatch` views of each chunk, so a
capture of any size is processed in bounded memory and no frame is copied one by one.
Every record yields a frame, whatever its link type: the decoder decides what it understands,
so ``score`` can still write one row per packet of the file.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from netids.detect.frames import LINKTYPE_ETHERNET, FrameBatch

PCAP_MAGIC = {
    b"\xd4\xc3\xb2\xa1": ("<", 1e-6),
    b"\xa1\xb2\xc3\xd4": (">", 1e-6),
    b"\x4d\x3c\xb2\xa1": ("<", 1e-9),
    b"\xa1\xb2\x3c\x4d": (">", 1e-9),
}
PCAPNG_SHB = 0x0A0D0D0A
MAX_RECORD = 16 * 1024 * 1024  # a larger record length means the file is corrupt
LINKTYPE_MASK = 0xFFFF  # the link type in a pcap header's last field; the rest is FCS/reserved
MAX_WIRE = 2**31 - 1  # a longer claimed length on the wire is kept as this (int32 columns)
# the smallest length of each block kind the reader takes fields from (pcapng spec, section 4)
MIN_BLOCK = {1: 20, 3: 16, 6: 32}  # interface description, simple packet, enhanced packet
CHUNK = 4 * 1024 * 1024
_FILE_HEADER = struct.Struct("<IHHiIII")  # magic, version 2.4, zone, sigfigs, snaplen, linktype
_RECORD_HEADER = struct.Struct("<IIII")  # seconds, nanoseconds, captured length, wire length

_Frame = tuple[int, int, int, float, int]  # start in chunk, caplen, wire length, ts, linktype


class CaptureFileError(Exception):
    """A capture file that cannot be read; the message is meant for the user as it is."""


@dataclass(slots=True)
class _Parsed:
    """The frames of the whole units (records, blocks) at the start of one chunk."""

    start: np.ndarray  # int64 [k], offset of each frame in the chunk
    caplen: np.ndarray  # int32 [k]
    wirelen: np.ndarray  # int32 [k]
    ts: np.ndarray  # float64 [k]
    linktype: np.ndarray  # uint16 [k]
    used: int  # bytes those units take; the rest of the chunk is carried into the next one
    error: CaptureFileError | None = None  # a corrupt unit after them, raised once they are out

    def __len__(self) -> int:
        return len(self.start)

    def batch(self, buf: bytes, first_index: int, rows: slice) -> FrameBatch:
        return FrameBatch(
            buf=np.frombuffer(buf, dtype=np.uint8),
            start=self.start[rows],
            caplen=self.caplen[rows],
            wirelen=self.wirelen[rows],
            ts=self.ts[rows],
            linktype=self.linktype[rows],
            first_index=first_index,
        )


@dataclass(slots=True)
class _Columns:
    """Per-frame columns collected while walking one chunk block by block."""

    start: list[int]
    caplen: list[int]
    wirelen: list[int]
    ts: list[float]
    linktype: list[int]

    @classmethod
    def empty(cls) -> _Columns:
        return cls([], [], [], [], [])

    def add(self, start: int, caplen: int, wirelen: int, ts: float, linktype: int) -> None:
        """Append one frame's columns."""
        self.start.append(start)
        self.caplen.append(caplen)
        self.wirelen.append(min(wirelen, MAX_WIRE))
        self.ts.append(ts)
        self.linktype.append(linktype)

    def parsed(self, used: int, error: CaptureFileError | None) -> _Parsed:
        return _Parsed(
            start=np.array(self.start, dtype=np.int64),
            caplen=np.array(self.caplen, dtype=np.int32),
            wirelen=np.array(self.wirelen, dtype=np.int32),
            ts=np.array(self.ts, dtype=np.float64),
            linktype=np.array(self.linktype, dtype=np.uint16),
            used=used,
            error=error,
        )


def read_batches(path: str | Path, batch_size: int = 4096) -> Iterator[FrameBatch]:
    """Yield the frames of a pcap or pcapng file in file order, ``batch_size`` at most at once.

    Raises :class:`CaptureFileError` for a missing, empty, foreign or truncated file; frames
    read before a truncation are yielded first, so nothing already read is lost.
    """
    path = Path(path)
    fh, head = _open(path)
    with fh:
        if head in PCAP_MAGIC:
            yield from _PcapReader(fh, path, head, batch_size).batches()
        else:
            fh.seek(0)
            yield from _PcapngReader(fh, path, batch_size).batches()


def check_capture(path: str | Path) -> None:
    """Raise :class:`CaptureFileError` unless ``path`` starts like a pcap or pcapng file, so
    a command can refuse before it creates (or overwrites) its output."""
    fh, _ = _open(Path(path))
    fh.close()


def _open(path: Path) -> tuple[BinaryIO, bytes]:
    """The open file and its first four bytes, a pcap or pcapng magic number."""
    try:
        fh = path.open("rb")
        head = fh.read(4)
    except OSError as exc:
        raise CaptureFileError(f"{path}: cannot open ({exc.strerror})") from exc
    if head in PCAP_MAGIC or (len(head) == 4 and struct.unpack("<I", head)[0] == PCAPNG_SHB):
        return fh, head
    fh.close()
    if not head:
        raise CaptureFileError(f"{path}: the file is empty")
    raise CaptureFileError(f"{path}: not a pcap or pcapng file (starts with {head.hex()})")


class _PcapReader:
    """Classic libpcap format: a 24-byte header, then 16-byte record headers."""

    def __init__(self, fh: BinaryIO, path: Path, magic: bytes, batch_size: int) -> None:
        self.fh, self.path, self.batch_size = fh, path, batch_size
        order, self.tick = PCAP_MAGIC[magic]
        rest = fh.read(20)
        if len(rest) < 20:
            raise CaptureFileError(f"{path}: truncated pcap header")
        # LinkType is the low 16 bits; above it sit reserved bits and the FCS length (its
        # frames then end in a checksum the decoder ignores), never part of the link type
        self.linktype = struct.unpack(order + "HHiIII", rest)[5] & LINKTYPE_MASK
        self.length = struct.Struct(order + "I")  # a record's captured length, at offset 8
        self.header = np.dtype(order + "u4")  # a record header: seconds, fraction, lengths

    def batches(self) -> Iterator[FrameBatch]:
        return _stream(self.fh, self.path, self._parse, self.batch_size, "record")

    def _parse(self, buf: bytes, index: int) -> _Parsed:
        """The whole records of ``buf``. Only the walk from record to record is a Python loop
        (each start depends on the previous length); the headers are then read in one gather,
        which is what makes reading several times faster than unpacking record by record."""
        length, starts, off, end = self.length.unpack_from, [], 0, len(buf)
        error = None
        while off + 16 <= end:
            incl = length(buf, off + 8)[0]
            if incl > MAX_RECORD:
                error = CaptureFileError(f"{self.path}: corrupt record after packet "
                                         f"{index + len(starts)} (claims {incl} bytes)")
                break
            if off + 16 + incl > end:
                break
            starts.append(off)
            off += 16 + incl
        at = np.array(starts, dtype=np.int64)
        raw = np.frombuffer(buf, dtype=np.uint8)[at[:, None] + np.arange(16)]  # [k, 16]
        sec, frac, incl, orig = raw.view(self.header).astype(np.int64).T  # [4, k]
        return _Parsed(
            start=at + 16,
            caplen=incl.astype(np.int32),
            wirelen=np.minimum(np.maximum(orig, incl), np.iinfo(np.int32).max).astype(np.int32),
            ts=sec + frac * self.tick,
            linktype=np.full(len(at), self.linktype, dtype=np.uint16),
            used=off,
            error=error,
        )


@dataclass(slots=True)
class _Interface:
    linktype: int
    tick: float
    snaplen: int


class _PcapngReader:
    """pcapng: blocks of (type, length, body, length); frames come from EPB and SPB blocks."""

    def __init__(self, fh: BinaryIO, path: Path, batch_size: int) -> None:
        self.fh, self.path, self.batch_size = fh, path, batch_size
        self.order = "<"
        self.interfaces: list[_Interface] = []

    def batches(self) -> Iterator[FrameBatch]:
        return _stream(self.fh, self.path, self._parse, self.batch_size, "block")

    def _parse(self, buf: bytes, index: int) -> _Parsed:
        """The frames of the whole blocks of ``buf``."""
        cols, used = _Columns.empty(), 0
        try:
            for block_end, frame in self._frames(buf):
                used = block_end
                if frame is not None:
                    cols.add(*frame)
        except CaptureFileError as exc:
            return cols.parsed(used, exc)
        return cols.parsed(used, None)

    def _frames(self, buf: bytes) -> Iterator[tuple[int, _Frame | None]]:
        """Walk whole blocks of ``buf``; yield (offset after block, frame columns or None)."""
        off, end = 0, len(buf)
        while off + 12 <= end:
            btype = struct.unpack_from(self.order + "I", buf, off)[0]
            if btype == PCAPNG_SHB:
                bom = buf[off + 8 : off + 12]
                if bom == b"\x4d\x3c\x2b\x1a":
                    self.order = "<"
                elif bom == b"\x1a\x2b\x3c\x4d":
                    self.order = ">"
                else:
                    raise CaptureFileError(f"{self.path}: not a pcapng file (bad byte-order mark)")
                self.interfaces = []
            blen = struct.unpack_from(self.order + "I", buf, off + 4)[0]
            if blen < MIN_BLOCK.get(btype, 12) or blen % 4 or blen > MAX_RECORD:
                raise CaptureFileError(f"{self.path}: corrupt pcapng block of length {blen}")
            if off + blen > end:
                return
            frame = self._block(buf, off, btype, blen)
            off += blen
            yield off, frame

    def _block(self, buf: bytes, off: int, btype: int, blen: int) -> _Frame | None:
        o = self.order
        if btype == 1:  # Interface Description Block
            linktype, _, snaplen = struct.unpack_from(o + "HHI", buf, off + 8)
            self.interfaces.append(
                _Interface(linktype, _tsresol(buf, off + 16, off + blen - 4, o), snaplen)
            )
            return None
        if btype == 6:  # Enhanced Packet Block
            ifid, hi, lo, incl, orig = struct.unpack_from(o + "IIIII", buf, off + 8)
            if incl > blen - 32:
                raise CaptureFileError(f"{self.path}: corrupt packet block (length {incl})")
            iface = self._interface(ifid)
            return off + 28, incl, max(orig, incl), ((hi << 32) | lo) * iface.tick, iface.linktype
        if btype == 3:  # Simple Packet Block: no timestamp
            orig = struct.unpack_from(o + "I", buf, off + 8)[0]
            iface = self._interface(0)
            incl = min(orig, blen - 16, iface.snaplen or orig)
            return off + 12, incl, orig, 0.0, iface.linktype
        return None

    def _interface(self, ifid: int) -> _Interface:
        if ifid >= len(self.interfaces):
            raise CaptureFileError(f"{self.path}: packet names interface {ifid}, never described")
        return self.interfaces[ifid]


def _stream(
    fh: BinaryIO,
    path: Path,
    parse: Callable[[bytes, int], _Parsed],
    batch_size: int,
    unit: str,
) -> Iterator[FrameBatch]:
    """Read ``fh`` in chunks; ``parse`` finds the frames of the whole units (records, blocks)
    in a chunk, and a unit cut by the chunk's end is carried into the next chunk."""
    index, pending = 0, b""
    while True:
        try:
            data = fh.read(CHUNK)
        except OSError as exc:
            raise CaptureFileError(f"{path}: cannot read after packet {index} "
                                   f"({exc.strerror})") from exc
        buf = pending + data if pending else data
        if not buf:
            return
        found = parse(buf, index)
        for first in range(0, len(found), batch_size):
            yield found.batch(buf, index + first, slice(first, first + batch_size))
        index += len(found)
        if found.error is not None:
            raise found.error
        pending = buf[found.used:]
        if not data:
            if pending:
                raise CaptureFileError(
                    f"{path}: truncated after packet {index} "
                    f"({len(pending)} bytes of an incomplete {unit} at the end)"
                )
            return


def _tsresol(buf: bytes, off: int, end: int, order: str) -> float:
    """Seconds per timestamp tick from an IDB's options (``if_tsresol``, default 1 us)."""
    while off + 4 <= end:
        code, length = struct.unpack_from(order + "HH", buf, off)
        if code == 0:
            break
        if code == 9 and length >= 1:
            v = buf[off + 4]
            return 2.0 ** -(v & 0x7F) if v & 0x80 else 10.0**-v
        off += 4 + ((length + 3) & ~3)
    return 1e-6


def write_pcap(
    path: str | Path,
    frames: Iterable[tuple[float, bytes] | tuple[float, bytes, int]],
    linktype: int = LINKTYPE_ETHERNET,
    snaplen: int = 262144,
) -> int:
    """Write (timestamp, frame[, wire length]) records as a nanosecond pcap; return the count."""
    n = 0
    with Path(path).open("wb") as fh:
        out = PcapWriter(fh, linktype, snaplen)
        for rec in frames:
            out.write(rec[0], rec[1], rec[2] if len(rec) > 2 else None)  # type: ignore[misc]
            n += 1
    return n


class PcapWriter:
    """A nanosecond pcap written record by record into an open binary file.

    The file header goes out at once; every ``write`` appends one record, so a capture of any
    length is written as it arrives.

    >>> import io
    >>> fh = io.BytesIO()
    >>> out = PcapWriter(fh, snaplen=65535)
    >>> out.write(1.5, bytes(60))
    >>> len(fh.getvalue())  # file header, record header, frame
    100
    """

    def __init__(
        self, fh: BinaryIO, linktype: int = LINKTYPE_ETHERNET, snaplen: int = 262144
    ) -> None:
        self.fh = fh
        fh.write(_FILE_HEADER.pack(0xA1B23C4D, 2, 4, 0, 0, snaplen, linktype))

    def write(self, ts: float, frame: bytes, wire: int | None = None) -> None:
        """Append ``frame`` taken at ``ts`` seconds; ``wire``: its length on the wire."""
        self.write_ns(round(ts * 1e9), frame, wire)

    def write_ns(self, ns: int, frame: bytes, wire: int | None = None) -> None:
        """Append ``frame`` taken at ``ns`` nanoseconds, exactly (no float in between)."""
        size = len(frame)
        wire = size if wire is None else wire
        self.fh.write(_RECORD_HEADER.pack(ns // 10**9, ns % 10**9, size, wire))
        self.fh.write(frame)
