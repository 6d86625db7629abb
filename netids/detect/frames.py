"""Raw frames as they leave a capture source: one byte buffer plus per-frame columns.

Both sources (live AF_PACKET and pcap/pcapng files) yield :class:`FrameBatch`; the decoder
reads it without copying a frame. Keeping frames in one buffer is what lets decoding be a
handful of numpy gathers instead of a Python loop per packet.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

# Link-layer header types (https://www.tcpdump.org/linktypes.html) the decoder understands.
LINKTYPE_NULL = 0
LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = 101
LINKTYPE_LOOP = 108
LINKTYPE_LINUX_SLL = 113
LINKTYPE_IPV4 = 228
LINKTYPE_IPV6 = 229
LINKTYPE_LINUX_SLL2 = 276
# DLT_RAW is 12 on most BSDs and 14 on OpenBSD; files written there carry those numbers.
RAW_ALIASES = (12, 14)


@dataclass(frozen=True, slots=True)
class FrameBatch:
    """Consecutive frames of one source, in arrival (file) order.

    ``first_index`` is the position of the first frame in its source (0-based), so frame ``i``
    of the batch is packet ``first_index + i`` of the file or capture session.
    """

    buf: np.ndarray  # uint8, holds every frame's captured bytes
    start: np.ndarray  # int64 [n], offset of each frame in buf
    caplen: np.ndarray  # int32 [n], bytes captured
    wirelen: np.ndarray  # int32 [n], length on the wire (>= caplen when a snaplen cut it)
    ts: np.ndarray  # float64 [n], seconds since the epoch
    linktype: np.ndarray  # uint16 [n], LINKTYPE_* of each frame
    first_index: int = 0

    def __post_init__(self) -> None:
        n = len(self.start)
        assert len(self.caplen) == len(self.wirelen) == len(self.ts) == len(self.linktype) == n

    def __len__(self) -> int:
        return len(self.start)

    def frame(self, i: int) -> bytes:
        """The captured bytes of frame ``i``."""
        s = int(self.start[i])
        return self.buf[s : s + int(self.caplen[i])].tobytes()

    def take(self, idx: np.ndarray) -> FrameBatch:
        """The frames at ``idx`` (ascending indices), sharing this batch's buffer: a sample
        to score under overload (``first_index`` stays that of the whole batch).

        >>> b = FrameBatch.from_frames([b"ab", b"cde", b"f"], [1.0, 2.0, 3.0])
        >>> b.take(np.array([0, 2])).frame(1)
        b'f'
        """
        return FrameBatch(self.buf, self.start[idx], self.caplen[idx], self.wirelen[idx],
                          self.ts[idx], self.linktype[idx], self.first_index)

    @classmethod
    def concat(cls, batches: Sequence[FrameBatch]) -> FrameBatch:
        """Consecutive batches as one (their buffers joined): fewer, larger batches cost less
        per packet when live capture has fallen behind.

        >>> a = FrameBatch.from_frames([b"ab"], [1.0], first_index=7)
        >>> b = FrameBatch.from_frames([b"cde", b"f"], [2.0, 3.0], first_index=8)
        >>> c = FrameBatch.concat([a, b])
        >>> len(c), c.frame(2), c.first_index
        (3, b'f', 7)
        """
        if len(batches) == 1:
            return batches[0]
        offsets = np.cumsum([0] + [len(b.buf) for b in batches[:-1]])
        return cls(
            buf=np.concatenate([b.buf for b in batches]),
            start=np.concatenate([b.start + o for b, o in zip(batches, offsets, strict=True)]),
            caplen=np.concatenate([b.caplen for b in batches]),
            wirelen=np.concatenate([b.wirelen for b in batches]),
            ts=np.concatenate([b.ts for b in batches]),
            linktype=np.concatenate([b.linktype for b in batches]),
            first_index=batches[0].first_index,
        )

    @classmethod
    def from_frames(
        cls,
        frames: Sequence[bytes],
        ts: Sequence[float] | np.ndarray,
        *,
        wirelen: Sequence[int] | np.ndarray | None = None,
        linktype: int | Sequence[int] | np.ndarray = LINKTYPE_ETHERNET,
        first_index: int = 0,
    ) -> FrameBatch:
        """Build a batch from separate frames (tests, scapy packets, small inputs).

        >>> b = FrameBatch.from_frames([b"ab", b"cde"], [1.0, 2.0])
        >>> len(b), b.frame(1), int(b.wirelen[1])
        (2, b'cde', 3)
        """
        caplen = np.fromiter((len(f) for f in frames), dtype=np.int32, count=len(frames))
        start = np.zeros(len(frames), dtype=np.int64)
        if len(frames) > 1:
            np.cumsum(caplen[:-1], out=start[1:])
        n = len(frames)
        return cls(
            buf=np.frombuffer(b"".join(frames), dtype=np.uint8),
            start=start,
            caplen=caplen,
            wirelen=caplen.copy() if wirelen is None else np.asarray(wirelen, dtype=np.int32),
            ts=np.asarray(ts, dtype=np.float64),
            linktype=np.broadcast_to(np.asarray(linktype, dtype=np.uint16), (n,)).copy(),
            first_index=first_index,
        )
