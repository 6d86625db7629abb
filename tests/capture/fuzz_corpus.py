"""A corpus of corrupted capture files, made from one small real capture.

Each file is the real capture (as pcap, and re-wrapped as pcapng) with one kind of damage a
hostile or broken writer produces: flipped bits, a cut, a header field out of range (the link
type's reserved and FCS bits among them), a record or block claiming a huge or impossible
length, blocks in the wrong order. The corpus is deterministic for a seed, so a failure names
a file that can be made again.
"""

from __future__ import annotations

import random
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from netids.capture.pcapfile import read_batches

Frame = tuple[float, bytes]  # timestamp, frame bytes
PCAP_HEADER = 24
RECORD_HEADER = 16
SHB_LEN = 28
IDB_LEN = 20


@dataclass(frozen=True)
class Damaged:
    """One corrupted file: its name says how it was made."""

    name: str
    data: bytes


def frames_of(path: Path, limit: int = 40) -> list[Frame]:
    """The first ``limit`` frames of a real capture."""
    out: list[Frame] = []
    for batch in read_batches(path):
        out += [(float(batch.ts[i]), batch.frame(i)) for i in range(len(batch))]
        if len(out) >= limit:
            break
    return out[:limit]


def pcap_bytes(frames: list[Frame], linktype: int = 1) -> bytes:
    """A classic microsecond pcap, little-endian."""
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, linktype)]
    for ts, frame in frames:
        sec, usec = int(ts), int(round((ts % 1) * 1e6)) % 1_000_000
        out.append(struct.pack("<IIII", sec, usec, len(frame), len(frame)) + frame)
    return b"".join(out)


def pcapng_bytes(frames: list[Frame], linktype: int = 1) -> bytes:
    """A pcapng: section header, one interface, one enhanced packet block per frame."""
    out = [_block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1)),
           _block(1, struct.pack("<HHI", linktype, 0, 65535))]
    for ts, frame in frames:
        stamp = int(ts * 1e6)
        body = struct.pack("<IIIII", 0, stamp >> 32, stamp & 0xFFFFFFFF, len(frame), len(frame))
        out.append(_block(6, body + frame + bytes(-len(frame) % 4)))
    return b"".join(out)


def _block(btype: int, body: bytes) -> bytes:
    length = 12 + len(body)
    return struct.pack("<II", btype, length) + body + struct.pack("<I", length)


def corpus(frames: list[Frame], seed: int = 16) -> Iterator[Damaged]:
    """About 300 damaged files made from ``frames``."""
    rng = random.Random(seed)
    pcap, pcapng = pcap_bytes(frames), pcapng_bytes(frames)
    for make in (_bit_flips, _cuts, _pcap_header_fields, _pcap_records, _pcapng_blocks,
                 _splices):
        yield from make(rng, pcap, pcapng, frames)


Maker = Callable[[random.Random, bytes, bytes, list[Frame]], Iterator[Damaged]]


def _bit_flips(rng: random.Random, pcap: bytes, pcapng: bytes,
               frames: list[Frame]) -> Iterator[Damaged]:
    for kind, good in (("pcap", pcap), ("pcapng", pcapng)):
        for i in range(60):
            data = bytearray(good)
            # half the flips land in the first 64 bytes, where the headers are
            span = 64 if i % 2 else len(data)
            for _ in range(rng.randint(1, 8)):
                data[rng.randrange(span)] ^= 1 << rng.randrange(8)
            yield Damaged(f"{kind}-bitflip-{i}", bytes(data))


def _cuts(rng: random.Random, pcap: bytes, pcapng: bytes,
          frames: list[Frame]) -> Iterator[Damaged]:
    for kind, good in (("pcap", pcap), ("pcapng", pcapng)):
        for at in (1, 3, 4, 10, 23, 24, 25, 30, 40):
            yield Damaged(f"{kind}-cut-at-{at}", good[:at])
        for i in range(16):
            yield Damaged(f"{kind}-cut-{i}", good[: rng.randrange(len(good))])


def _pcap_header_fields(rng: random.Random, pcap: bytes, pcapng: bytes,
                        frames: list[Frame]) -> Iterator[Damaged]:
    linktypes = [0x0400_0001, 0x1000_0001, 0x0C00_0001, 0x0001_0001, 0x03FF_0001,
                 0xF000_0001, 0xFFFF_0001, 0x8000_0000, 0xFFFF_FFFF, 0x0000_FFFF, 105, 127,
                 0x1000_0069]
    linktypes += [rng.getrandbits(32) for _ in range(10)]
    for lt in linktypes:
        yield Damaged(f"pcap-linktype-{lt:#010x}", pcap[:20] + struct.pack("<I", lt) + pcap[24:])
    for snaplen in (0, 1, 0xFFFFFFFF, 0x7FFFFFFF):
        yield Damaged(f"pcap-snaplen-{snaplen}",
                      pcap[:16] + struct.pack("<I", snaplen) + pcap[20:])
    for major, minor in ((0, 0), (1, 0), (2, 2), (65535, 65535)):
        yield Damaged(f"pcap-version-{major}.{minor}",
                      pcap[:4] + struct.pack("<HH", major, minor) + pcap[8:])
    for magic in (b"\xa1\xb2\xc3\xd4", b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d"):
        yield Damaged(f"pcap-magic-{magic.hex()}", magic + pcap[4:])


def _pcap_records(rng: random.Random, pcap: bytes, pcapng: bytes,
                  frames: list[Frame]) -> Iterator[Damaged]:
    starts, off = [], PCAP_HEADER
    for _, frame in frames:
        starts.append(off)
        off += RECORD_HEADER + len(frame)
    lengths = [0, 1, 0xFFFFFFFF, 0x7FFFFFFF, 16 * 1024 * 1024, 16 * 1024 * 1024 + 1,
               len(pcap), 65536]
    for i, caplen in enumerate(lengths):
        at = starts[i * 3 % len(starts)]
        yield Damaged(f"pcap-caplen-{caplen}-record-{i * 3 % len(starts)}",
                      pcap[: at + 8] + struct.pack("<I", caplen) + pcap[at + 12:])
    for i, wire in enumerate((0, 1, 0xFFFFFFFF, 0x80000000)):
        at = starts[i + 1]
        yield Damaged(f"pcap-wirelen-{wire}",
                      pcap[: at + 12] + struct.pack("<I", wire) + pcap[at + 16:])
    for i, (sec, frac) in enumerate(((0xFFFFFFFF, 0), (0, 0xFFFFFFFF), (0, 2_000_000_000))):
        at = starts[i + 2]
        yield Damaged(f"pcap-timestamp-{sec}-{frac}",
                      pcap[:at] + struct.pack("<II", sec, frac) + pcap[at + 8:])
    for i in range(20):
        at = rng.choice(starts)
        yield Damaged(f"pcap-record-garbage-{i}",
                      pcap[:at] + rng.randbytes(RECORD_HEADER) + pcap[at + RECORD_HEADER:])
    yield Damaged("pcap-header-only", pcap[:PCAP_HEADER])
    yield Damaged("pcap-trailing-garbage", pcap + rng.randbytes(37))


def _pcapng_blocks(rng: random.Random, pcap: bytes, pcapng: bytes,
                   frames: list[Frame]) -> Iterator[Damaged]:
    shb, idb, packets = pcapng[:SHB_LEN], pcapng[SHB_LEN:SHB_LEN + IDB_LEN], pcapng[48:]
    epb_len = struct.unpack_from("<I", packets, 4)[0]
    first_epb, rest = packets[:epb_len], packets[epb_len:]
    for blen in (0, 4, 8, 12, 13, 16, 20, 24, 26, 0xFFFFFFFC, 0xFFFFFFFF, 16 * 1024 * 1024 + 4):
        yield Damaged(f"pcapng-epb-length-{blen}",
                      shb + idb + first_epb[:4] + struct.pack("<I", blen) + first_epb[8:] + rest)
        yield Damaged(f"pcapng-idb-length-{blen}",
                      shb + idb[:4] + struct.pack("<I", blen) + idb[8:] + packets)
        yield Damaged(f"pcapng-shb-length-{blen}",
                      shb[:4] + struct.pack("<I", blen) + shb[8:] + idb + packets)
    for incl in (0xFFFFFFFF, epb_len, epb_len - 31, 0x7FFFFFFF):
        yield Damaged(f"pcapng-epb-caplen-{incl}",
                      shb + idb + first_epb[:20] + struct.pack("<I", incl) + first_epb[24:] + rest)
    for ifid in (1, 0xFFFFFFFF):
        yield Damaged(f"pcapng-epb-interface-{ifid}",
                      shb + idb + first_epb[:8] + struct.pack("<I", ifid) + first_epb[12:] + rest)
    for lt in (0xFFFF, 105, 127, 0):
        yield Damaged(f"pcapng-idb-linktype-{lt}",
                      shb + idb[:8] + struct.pack("<H", lt) + idb[10:] + packets)
    for resol in (0, 0x7F, 0xFF, 0x80, 200):
        option = struct.pack("<HHB3x", 9, 1, resol) + struct.pack("<HH", 0, 0)
        body = idb[8:16] + option
        yield Damaged(f"pcapng-tsresol-{resol}", shb + _block(1, body) + packets)
    yield Damaged("pcapng-tsresol-option-overruns",
                  shb + _block(1, idb[8:16] + struct.pack("<HH", 9, 0xFFF0)) + packets)
    for btype, name in ((1, "idb"), (6, "epb"), (3, "spb")):  # too short for their fields,
        for blen in (12, 16):  # and the last block of the file
            yield Damaged(f"pcapng-short-{name}-{blen}-at-end",
                          shb + idb + struct.pack("<II", btype, blen) + bytes(blen - 12)
                          + struct.pack("<I", blen))
    yield Damaged("pcapng-no-interface", shb + packets)
    yield Damaged("pcapng-bad-byte-order-mark", shb[:8] + b"\x00\x11\x22\x33" + shb[12:] + idb)
    yield Damaged("pcapng-big-endian-mark-little-blocks",
                  shb[:8] + b"\x1a\x2b\x3c\x4d" + shb[12:] + idb + packets)
    yield Damaged("pcapng-second-section-mid-file", shb + idb + first_epb + shb + rest)
    yield Damaged("pcapng-simple-packet-no-interface",
                  shb + _block(3, struct.pack("<I", 60) + bytes(60)))
    yield Damaged("pcapng-simple-packet-huge-length",
                  shb + idb + _block(3, struct.pack("<I", 0xFFFFFFFF) + bytes(60)))
    yield Damaged("pcapng-simple-packet-empty", shb + idb + _block(3, b""))
    yield Damaged("pcapng-unknown-blocks",
                  shb + idb + _block(0x0BAD, rng.randbytes(40)) + _block(0, b"") + packets)
    for i in range(12):
        junk = _block(rng.choice((1, 3, 5, 6, 0x0A0D0D0A)), rng.randbytes(rng.randrange(0, 48, 4)))
        yield Damaged(f"pcapng-random-block-{i}", shb + idb + junk + packets)


def _splices(rng: random.Random, pcap: bytes, pcapng: bytes,
             frames: list[Frame]) -> Iterator[Damaged]:
    for i in range(15):
        a, b = sorted(rng.randrange(len(pcap)) for _ in range(2))
        yield Damaged(f"pcap-into-pcapng-{i}", pcapng[:SHB_LEN + IDB_LEN] + pcap[a:b])
        a, b = sorted(rng.randrange(len(pcapng)) for _ in range(2))
        yield Damaged(f"pcapng-into-pcap-{i}", pcap[:PCAP_HEADER] + pcapng[a:b])
    for i in range(10):
        yield Damaged(f"pcap-random-body-{i}",
                      pcap[:PCAP_HEADER] + rng.randbytes(rng.randrange(16, 600)))
