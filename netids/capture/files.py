"""Recorded frames: a pcap or pcapng file played through the same async API as live capture.

With ``realtime`` the batches are paced by the packets' own timestamps, cut where they cross
``batch_timeout``, so a recording arrives like live traffic would.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path

import numpy as np

from netids.capture.pcapfile import PCAPNG_SHB, CaptureFileError, read_batches
from netids.capture.progress import RECORD_OVERHEAD, Meter, Snapshot, packet_bytes
from netids.capture.source import CaptureError, CaptureStats
from netids.config import CaptureSettings
from netids.detect.frames import FrameBatch


class FileSource:
    """Frames of a pcap or pcapng file with the same async API as :class:`.LiveSource`.

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
        self._progress: FileProgress | None = None

    def start(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        if not self.path.is_file():
            raise CaptureError(f"{self.path}: no such capture file")
        self._started, self._stopped = True, False
        self._progress = FileProgress([self.path])

    def progress(self) -> Snapshot | None:
        """How far through the file the batches handed on so far reach."""
        return self._progress.snapshot() if self._progress is not None else None

    def stop(self) -> None:
        self._stopped = True

    @property
    def running(self) -> bool:
        return self._started and not self._stopped

    def waiting(self, limit: int) -> list[FrameBatch]:
        """Batches already read and waiting: none (see :meth:`backlog`)."""
        return []

    def backlog(self) -> int:
        """Batches waiting for the pipeline: none, a file is read at the pipeline's pace."""
        return 0

    def stats(self) -> CaptureStats:
        return CaptureStats(packets=self._packets, bytes=self._bytes, batches=self._batches)

    async def batches(self) -> AsyncIterator[FrameBatch]:
        if not self._started:
            raise CaptureError("capture not started: call start() first")
        it = read_batches(self.path, self.settings.batch_size)
        assert self._progress is not None
        count = self._progress.counter(self.path)
        clock = _Pacer(self.speed, self.max_gap) if self.realtime else None
        try:
            while not self._stopped:
                try:
                    batch = await asyncio.to_thread(next, it, None)
                except CaptureFileError as exc:
                    raise CaptureError(str(exc)) from exc
                if batch is None:
                    self._progress.meter.finish()  # the whole file is through
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
                    count(part)
                    yield part
        finally:
            self._stopped = True


class FileProgress:
    """Progress through capture files, counted from the packets finished: call the
    :meth:`counter` of a file with each batch of it that is done."""

    def __init__(self, paths: Sequence[Path], clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.meter = Meter(total=sum(_size(p) for p in paths), started=clock())

    def counter(self, path: Path) -> Callable[[FrameBatch], None]:
        """What to call with each finished batch of ``path``."""
        overhead = record_overhead(path)

        def count(frames: FrameBatch) -> None:
            n = len(frames)
            self.meter.advance(packets=n, work=packet_bytes(n, int(frames.caplen.sum()),
                                                            overhead))

        return count

    def snapshot(self) -> Snapshot:
        return self.meter.snapshot(self.clock())


def record_overhead(path: Path) -> int:
    """Bytes each packet record of ``path`` takes beside the packet, by its format."""
    try:
        with Path(path).open("rb") as fh:
            head = fh.read(4)
    except OSError:
        return RECORD_OVERHEAD["pcap"]
    pcapng = len(head) == 4 and int.from_bytes(head, "little") == PCAPNG_SHB
    return RECORD_OVERHEAD["pcapng" if pcapng else "pcap"]


def _size(path: Path) -> int:
    try:
        return Path(path).stat().st_size
    except OSError:
        return 0


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
