"""Capture files as training and evaluation data: packets and their context features.

The same decode and context features as the live pipeline (:meth:`Pipeline.featurise`), over a
whole file with fresh context state, so a model is trained and judged on exactly what it will
see.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from netids.capture.pcapfile import read_batches
from netids.detect.context import FEATURE_NAMES, ContextFeatures
from netids.detect.decode import decode
from netids.detect.frames import FrameBatch
from netids.detect.packets import PacketBatch


def read_capture(path: str | Path, batch_size: int = 4096,
                 done: Callable[[FrameBatch], None] | None = None,
                 ) -> tuple[PacketBatch, np.ndarray]:
    """Decode a whole capture file and compute its context features (fresh state per file);
    ``done`` hears of each batch once it is featurised (for a progress bar)."""
    ctx = ContextFeatures()
    packets, feats = [], []
    for frames in read_batches(path, batch_size):
        p = decode(frames)
        packets.append(p)
        feats.append(ctx.update(p))
        if done is not None:
            done(frames)
    if not packets:
        return _empty_packets(), np.zeros((0, len(FEATURE_NAMES)), np.float32)
    return PacketBatch.concat(packets), np.concatenate(feats).astype(np.float32)


def cold_starts(packets: PacketBatch, count: int, warmup: float) -> list[tuple[PacketBatch,
                                                                              np.ndarray]]:
    """``count`` stretches of ``warmup`` seconds from inside a capture, each featurised from a
    fresh context, as a sensor started there would see them.

    A sensor that starts (or restarts) meets every host, MAC and connection for the first
    time: new addresses per second jump, connections are joined mid-transfer. A capture read
    from its start shows that once; training on these stretches too teaches the model what a
    start looks like, so the first minute of a sensor is not a wall of alarms (issue #15).
    They start at evenly spaced packets after the first, never at the capture's own start.
    """
    n = len(packets)
    if n == 0 or count <= 0:
        return []
    ts = np.maximum.accumulate(packets.ts)
    out = []
    for i in np.linspace(0, n, count + 2)[1:-1].astype(np.int64).tolist():
        end = int(np.searchsorted(ts, ts[i] + warmup, side="right"))
        part = packets.take(slice(i, end))
        out.append((part, ContextFeatures().update(part)))
    return out


def _empty_packets() -> PacketBatch:
    z = np.zeros(0, np.int64)
    return decode(FrameBatch(np.zeros(0, np.uint8), z, z.astype(np.int32), z.astype(np.int32),
                             z.astype(np.float64), z.astype(np.uint16)))
