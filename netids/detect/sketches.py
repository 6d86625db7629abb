"""Fixed-size summaries of a stream of 64-bit keys, for state that a flood must not grow:
how many distinct keys (:class:`DistinctCount`, exact while few, then a HyperLogLog) and
which keys are the heaviest (:class:`TopK`, the Space-Saving summary).

Keys are hashed with :func:`hash64` first (an address's two 64-bit halves to one well-mixed
64-bit word), so a spoofed flood from random addresses and a scan of consecutive ones look
alike to the sketches. Numpy throughout: a batch is one call.

>>> c = DistinctCount()
>>> c.add(hash64(np.zeros(3, np.uint64), np.arange(3, dtype=np.uint64))); c.estimate, c.exact
(3, True)
>>> c.add(hash64(np.zeros(50_000, np.uint64), np.arange(50_000, dtype=np.uint64)))
>>> c.exact, abs(c.estimate - 50_000) < 50_000 * 4 * HyperLogLog(11).error
(False, True)
"""

from __future__ import annotations

import math

import numpy as np

_M1, _M2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)


def hash64(*words: np.ndarray) -> np.ndarray:
    """One 64-bit hash per row of equal-length uint64 arrays (splitmix64's finaliser, chained).

    >>> hash64(np.array([1], np.uint64)).dtype, len(set(hash64(np.arange(1000, dtype=np.uint64))))
    (dtype('uint64'), 1000)
    """
    h = np.full(len(words[0]), 0x9E3779B97F4A7C15, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for w in words:
            h = h ^ np.asarray(w).astype(np.uint64)
            h = (h ^ (h >> np.uint64(30))) * _M1
            h = (h ^ (h >> np.uint64(27))) * _M2
            h = h ^ (h >> np.uint64(31))
    return h


class HyperLogLog:
    """Distinct count of hashed keys in ``2 ** p`` one-byte registers (Flajolet et al. 2007,
    with linear counting for small counts): relative standard error ``1.04 / sqrt(2 ** p)``,
    2.3 % at the default ``p = 11`` (2 KiB), whatever the count."""

    def __init__(self, p: int = 11) -> None:
        assert 11 <= p <= 16, "p from 11 (2 KiB) to 16 (64 KiB)"
        self.p = p
        self.registers = np.zeros(1 << p, dtype=np.uint8)

    @property
    def error(self) -> float:
        """Relative standard error of :attr:`estimate`."""
        return 1.04 / math.sqrt(len(self.registers))

    def add(self, hashes: np.ndarray) -> None:
        if len(hashes) == 0:
            return
        h = hashes.astype(np.uint64)
        index = (h >> np.uint64(64 - self.p)).astype(np.int64)
        rest = h & np.uint64((1 << (64 - self.p)) - 1)  # below 2**53: exact as a float64
        _, bits = np.frexp(rest.astype(np.float64))  # bit length (0 for 0)
        rank = (64 - self.p - bits + 1).astype(np.uint8)
        np.maximum.at(self.registers, index, rank)

    @property
    def estimate(self) -> int:
        m = len(self.registers)
        raw = (0.7213 / (1 + 1.079 / m)) * m * m / float(np.ldexp(1.0, -self.registers.astype(
            np.int64)).sum())
        zeros = int(np.count_nonzero(self.registers == 0))
        if raw <= 2.5 * m and zeros:
            return round(m * math.log(m / zeros))
        return round(raw)


class DistinctCount:
    """Distinct hashed keys, counted exactly up to ``exact_up_to``, then by a HyperLogLog: an
    event with a handful of sources names the exact number, a spoofed flood's stays 2 KiB."""

    def __init__(self, exact_up_to: int = 64, p: int = 11) -> None:
        self.exact_up_to, self.p = exact_up_to, p
        self._set: set[int] | None = set()
        self._hll: HyperLogLog | None = None

    @property
    def exact(self) -> bool:
        return self._set is not None

    @property
    def estimate(self) -> int:
        return len(self._set) if self._set is not None else self._hll.estimate  # type: ignore[union-attr]

    def add(self, hashes: np.ndarray) -> None:
        if self._set is not None:
            if len(self._set) + len(hashes) <= self.exact_up_to or len(
                    self._set.union(hashes.tolist())) <= self.exact_up_to:
                self._set.update(hashes.tolist())
                return
            self._hll = HyperLogLog(self.p)
            self._hll.add(np.fromiter(self._set, np.uint64, len(self._set)))
            self._set = None
        self._hll.add(hashes)  # type: ignore[union-attr]


class TopK:
    """The ``k`` heaviest keys of a stream (Space-Saving, Metwally et al. 2005, in its
    mergeable batch form): every key whose true count exceeds ``total / k`` is held, and a
    held key's count overstates its true count by at most ``total / k``.

    >>> t = TopK(2)
    >>> t.add(np.array([5, 5, 5, 7, 9, 5], np.uint64)); t.top()
    [(5, 4), (7, 1)]
    """

    def __init__(self, k: int = 8) -> None:
        assert k >= 1
        self.k = k
        self.keys = np.zeros(0, dtype=np.uint64)
        self.counts = np.zeros(0, dtype=np.int64)
        self.total = 0

    def add(self, keys: np.ndarray) -> None:
        if len(keys) == 0:
            return
        self.total += len(keys)
        new, c = np.unique(keys.astype(np.uint64), return_counts=True)
        # a key not held may have been counted before and evicted: it inherits the floor
        floor = int(self.counts.min()) if len(self.counts) == self.k else 0
        held = np.isin(new, self.keys)
        allk = np.concatenate([self.keys, new])
        allc = np.concatenate([self.counts, c + np.where(held, 0, floor)])
        uk, inv = np.unique(allk, return_inverse=True)
        sums = np.bincount(inv.reshape(-1), weights=allc).astype(np.int64)
        keep = np.argsort(-sums, kind="stable")[: self.k]
        self.keys, self.counts = uk[keep], sums[keep]

    def top(self) -> list[tuple[int, int]]:
        """(key, count) pairs, heaviest first."""
        return list(zip(self.keys.tolist(), self.counts.tolist(), strict=True))
