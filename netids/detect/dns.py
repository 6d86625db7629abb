"""DNS messages where the capture holds them: which packets of a batch are DNS, and the
compact :class:`DnsRecord` of each (header and first question), which the DNS detector
(:mod:`netids.detect.behaviour_dns`) reads instead of frames.

Selecting is one vectorised pass: UDP or TCP to or from port 53 with a payload of at least
the 12-byte header (TCP: after its 2-byte length prefix, when the segment starts a message)
and a question. Only those are parsed, at most ``max_parsed`` a batch, and every byte is
treated as hostile: a label is at most 63 bytes, a name at most 255, parsing stops at a
compression pointer, and anything malformed ends the name or drops the packet, never raises.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from netids.detect.frames import FrameBatch
from netids.detect.packets import PROTO_TCP, PROTO_UDP, PacketBatch, format_ip

DNS_PORT = 53
HEADER = 12  # bytes of a DNS header (RFC 1035 4.1.1)
MAX_LABEL, MAX_NAME = 63, 255  # RFC 1035 2.3.4
NXDOMAIN = 3  # RCODE "name error"
SAFE_BYTES = b"abcdefghijklmnopqrstuvwxyz0123456789-_"  # label bytes kept as they are
SAFE = frozenset(SAFE_BYTES)


@dataclass(frozen=True, slots=True)
class DnsRecord:
    """One DNS query or response, as the detector needs it (no frame kept)."""

    ts: float
    client: str  # who asked: the source of a query, the destination of a response
    server: str  # the resolver asked
    response: bool  # QR bit
    opcode: int
    rcode: int
    qtype: int  # 0 when the question ends before its type
    name: str  # first question's name, lower case, other bytes as \\xNN; "" for the root
    index: int  # the packet's position in its stream


@dataclass(slots=True)
class DnsStats:
    looked: int = 0  # packets selected as DNS
    parsed: int = 0
    skipped: int = 0  # selected, but past max_parsed in their batch
    malformed: int = 0  # parsed, but no question could be read


class DnsReader:
    """Reads the DNS messages of a stream's batches (stateless but for its counters).

    >>> from netids.detect.decode import decode
    >>> q = bytes.fromhex("abcd01000001000000000000") + b"\\x03www\\x07Example\\x03com\\x00"
    >>> q += b"\\x00\\x01\\x00\\x01"
    >>> eth = bytes(12) + b"\\x08\\x00"
    >>> ip = bytes.fromhex("4500003d000100004011" "0000" "0a000001" "0a000002")
    >>> udp = bytes.fromhex("d431003500290000")
    >>> frames = FrameBatch.from_frames([eth + ip + udp + q], [1.0])
    >>> (r,) = DnsReader().read(frames, decode(frames))
    >>> r.client, r.server, r.response, r.name, r.qtype
    ('10.0.0.1', '10.0.0.2', False, 'www.example.com', 1)
    """

    def __init__(self, max_parsed: int = 1024) -> None:
        self.max_parsed = max_parsed  # packets parsed per batch at most (a DNS flood)
        self.stats = DnsStats()

    def read(self, frames: FrameBatch, packets: PacketBatch) -> list[DnsRecord]:
        """The DNS records of one batch (``packets`` decoded from ``frames``, same rows)."""
        index, skip = select(frames, packets)
        if len(index) == 0:
            return []
        self.stats.looked += len(index)
        if len(index) > self.max_parsed:
            self.stats.skipped += len(index) - self.max_parsed
            index, skip = index[: self.max_parsed], skip[: self.max_parsed]
        self.stats.parsed += len(index)
        found: list[DnsRecord] = []
        for i, extra in zip(index.tolist(), skip.tolist(), strict=True):
            start = int(frames.start[i]) + int(packets.payload_at[i]) + extra
            room = min(int(packets.payload[i]), int(frames.caplen[i])
                       - int(packets.payload_at[i])) - extra
            message = parse(frames.buf[start : start + min(room, HEADER + MAX_NAME + 5)]
                            .tobytes())
            if message is None:
                self.stats.malformed += 1
                continue
            qr, opcode, rcode, name, qtype = message
            src = format_ip(packets.src_hi[i], packets.src_lo[i])
            dst = format_ip(packets.dst_hi[i], packets.dst_lo[i])
            found.append(DnsRecord(
                ts=float(packets.ts[i]), client=dst if qr else src, server=src if qr else dst,
                response=qr, opcode=opcode, rcode=rcode, qtype=qtype, name=name,
                index=frames.first_index + i))
        return found


def select(frames: FrameBatch, packets: PacketBatch) -> tuple[np.ndarray, np.ndarray]:
    """Rows holding a DNS message with at least one question, and the bytes before it in the
    payload (2 for TCP's length prefix): one vectorised pass over the batch."""
    at = packets.payload_at
    tcp = packets.proto == PROTO_TCP
    skip = np.where(tcp, 2, 0).astype(np.int64)
    room = np.minimum(packets.payload, frames.caplen - at) - skip
    port = (packets.sport == DNS_PORT) | (packets.dport == DNS_PORT)
    cand = np.flatnonzero(port & (tcp | (packets.proto == PROTO_UDP)) & (at >= 0)
                          & (room >= HEADER + 1))
    if len(cand) == 0:
        return cand, skip[:0]
    pos = frames.start[cand] + at[cand] + skip[cand]
    qdcount = (frames.buf[pos + 4].astype(np.int64) << 8) | frames.buf[pos + 5]
    keep = qdcount >= 1
    return cand[keep], skip[cand][keep]


def parse(message: bytes) -> tuple[bool, int, int, str, int] | None:
    """QR, opcode, RCODE, the first question's name and its QTYPE; None if no question can be
    read. Bounded work whatever the bytes: one pass over at most 255 name bytes.

    >>> parse(bytes.fromhex("000181830001000000000000") + b"\\x02x\\xff\\x01y\\x00\\x00\\x10")
    (True, 0, 3, 'x\\\\xff.y', 16)
    >>> parse(b"\\x00" * 12 + b"\\x40abc") is None, parse(b"short") is None
    (True, True)
    """
    if len(message) < HEADER + 1:
        return None
    flags = int.from_bytes(message[2:4], "big")
    labels: list[str] = []
    pos, size = HEADER, 0
    while True:
        if pos >= len(message):
            return None
        length = message[pos]
        if length == 0:
            pos += 1
            break
        if length & 0xC0 == 0xC0:  # a compression pointer: the name ends here for us
            pos += 2
            break
        if length > MAX_LABEL or pos + 1 + length > len(message):
            return None
        size += length + 1
        if size > MAX_NAME:
            return None
        labels.append(_text(message[pos + 1 : pos + 1 + length]))
        pos += 1 + length
    qtype = int.from_bytes(message[pos : pos + 2], "big") if pos + 2 <= len(message) else 0
    return bool(flags >> 15), (flags >> 11) & 0xF, flags & 0xF, ".".join(labels), qtype


def _text(label: bytes) -> str:
    """A label as text: lower-case letters, digits, '-' and '_' as they are, every other
    byte (dots, quotes, control bytes) as ``\\xNN``, so a name splits on '.' safely."""
    low = label.lower()
    if not low.translate(None, SAFE_BYTES):  # nothing left once the safe bytes go
        return low.decode("ascii")
    return "".join(chr(b) if b in SAFE else f"\\x{b:02x}" for b in low)
