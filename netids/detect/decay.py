"""Exponentially decayed sums per key slot, a whole batch at a time, and what they turn into.

A value seen ``dt`` seconds ago weighs ``2 ** (-lambda * dt)``. Each (slot) group's decayed
sums are a cumulative sum of ``x * 2 ** (lambda * (t - T0))`` scaled back by
``2 ** (-lambda * (t - T0))`` plus the group's carried-in state; batches are cut into time
chunks short enough (``lambda * span <= MAX_EXPONENT``) for that to stay exact in float64.
"""

from __future__ import annotations

import numpy as np

MAX_EXPONENT = 8.0  # largest lambda * (t - T0) inside one chunk: values stay within 2**8


class DecayedSums:
    """Decayed sums of several value channels per slot of a :class:`KeyTable`, per window."""

    def __init__(self, capacity: int, lambdas: np.ndarray, channels: int) -> None:
        self.lambdas = lambdas  # [L]
        self.sums = np.zeros((capacity, len(lambdas), channels))  # state at last_t
        self.last_t = np.zeros(capacity)

    def reset(self, slots: np.ndarray, ts: np.ndarray) -> None:
        self.sums[slots] = 0.0
        self.last_t[slots] = ts

    def update(self, slots: np.ndarray, ts: np.ndarray, x: np.ndarray, chunk: np.ndarray,
               chunk_t0: np.ndarray) -> np.ndarray:
        """Add ``x`` [n, C] at times ``ts`` to the slots; return the sums after each packet,
        [n, L, C].

        Packet ``j`` belongs to time chunk ``chunk[j]`` starting at ``chunk_t0[chunk[j]]`` and
        spanning at most MAX_EXPONENT / max(lambda) seconds. Within a chunk every (slot)
        group is a scaled cumulative sum, computed for all chunks at once; only the state
        carried from one chunk to the next is a (short) loop over chunks.
        """
        n, cap = len(slots), len(self.last_t)
        order = np.argsort(chunk * cap + slots, kind="stable")
        s, c = slots[order], chunk[order]
        t0 = chunk_t0[c]
        t = np.clip(ts[order], t0, t0 + MAX_EXPONENT / self.lambdas.max())
        starts = np.ones(n, dtype=bool)
        starts[1:] = (s[1:] != s[:-1]) | (c[1:] != c[:-1])
        first = np.flatnonzero(starts)
        last = np.append(first[1:] - 1, n - 1)

        rel = (t - t0)[:, None] * self.lambdas  # [n, L], 0 .. MAX_EXPONENT
        csum = np.exp2(rel)[:, :, None] * x[order][:, None, :]  # [n, L, C] scaled terms
        np.cumsum(csum, axis=0, out=csum)  # in place: these arrays are the update's bulk
        before = np.zeros((len(first),) + csum.shape[1:])  # [G, L, C] sum before each group
        before[1:] = csum[first[1:] - 1]
        shrink = np.exp2(-rel)[:, :, None]

        gslots, gchunk = s[first], c[first]
        carried = np.empty_like(before)  # [G, L, C], slot state decayed to its chunk's t0
        bounds = np.searchsorted(gchunk, np.arange(len(chunk_t0) + 1))
        for lo, hi in zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True):
            if lo == hi:
                continue
            sl, ends = gslots[lo:hi], last[lo:hi]
            age = np.maximum(t0[first[lo]] - self.last_t[sl], 0.0)[:, None] * self.lambdas
            carried[lo:hi] = self.sums[sl] * np.exp2(-age)[:, :, None]
            self.sums[sl] = (csum[ends] - before[lo:hi] + carried[lo:hi]) * shrink[ends]
            self.last_t[sl] = t[ends]
        # each packet's group sum so far, plus the carried state, scaled back to its time
        before -= carried
        csum -= np.repeat(before, last - first + 1, axis=0)
        csum *= shrink
        out = np.empty_like(csum)
        out[order] = csum
        return out


def mean_std(w: np.ndarray, s: np.ndarray, ss: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    safe = np.maximum(w, 1e-12)
    mean = np.where(w > 1e-12, s / safe, 0.0)
    var = np.where(w > 1e-12, ss / safe - mean**2, 0.0)
    return mean, np.sqrt(np.maximum(var, 0.0))


def time_chunks(ts: np.ndarray, span: float) -> tuple[np.ndarray, np.ndarray]:
    """Cut a batch into time chunks of at most ``span`` seconds: each packet's chunk number,
    and each chunk's start time (the latest timestamp seen when it starts, so a packet
    stamped earlier than one before it counts as arriving then).

    >>> chunk, t0 = time_chunks(np.array([0.0, 1.0, 9.0, 9.5, 30.0]), 8.0)
    >>> chunk.tolist(), t0.tolist()
    ([0, 0, 1, 1, 2], [0.0, 9.0, 30.0])
    """
    running = np.maximum.accumulate(ts)
    chunk = np.zeros(len(ts), dtype=np.int64)
    starts = []
    lo, n = 0, len(ts)
    while lo < n:
        starts.append(float(running[lo]))
        hi = max(int(np.searchsorted(running, running[lo] + span, side="right")), lo + 1)
        chunk[lo:hi] = len(starts) - 1
        lo = hi
    return chunk, np.array(starts)
