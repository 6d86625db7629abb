"""A fixed-size hash index from 64-bit keys to slots, read and written a batch at a time.

A Python dict costs a bytecode round per key; under a flood of new addresses every packet is
a new key in several tables, and the dict work dominated (issue #16). This is open addressing
with linear probing in two numpy arrays, so a batch of keys is looked up, inserted or removed
in a few vectorised passes (one per probe step; most keys settle in the first).

Deleted keys leave tombstones, which inserts reuse; when live keys and tombstones together
fill 70 % of the positions, the index is rebuilt from the live keys.

>>> index = SlotIndex(capacity=8)
>>> index.put(np.array([7, 9], dtype=np.uint64), np.array([0, 1]))
>>> index.get(np.array([9, 7, 5], dtype=np.uint64)).tolist()
[1, 0, -1]
>>> index.remove(np.array([7], dtype=np.uint64))
>>> index.get(np.array([7, 9], dtype=np.uint64)).tolist()
[-1, 1]
"""

from __future__ import annotations

import numpy as np

EMPTY, GONE = -1, -2  # values of a position never used / of a removed key
GOLDEN = np.uint64(0x9E3779B97F4A7C15)  # Fibonacci hashing: spreads sequential keys
MAX_FILL = 0.7  # live keys and tombstones over positions, at most, before a rebuild


class SlotIndex:
    """uint64 key -> non-negative int64 slot, for at most ``capacity`` live keys."""

    def __init__(self, capacity: int) -> None:
        self.bits = max(4, int(np.ceil(np.log2(2 * capacity))))  # live keys fill <= half
        self.keys = np.zeros(1 << self.bits, dtype=np.uint64)
        self.vals = np.full(1 << self.bits, EMPTY, dtype=np.int64)
        self.taken = 0  # positions holding a live key or a tombstone

    def get(self, keys: np.ndarray) -> np.ndarray:
        """The slot of each key, -1 for keys not held."""
        out = np.full(len(keys), EMPTY, dtype=np.int64)
        found, pos = self._find(keys)
        out[found] = self.vals[pos[found]]
        return out

    def put(self, keys: np.ndarray, slots: np.ndarray) -> None:
        """Hold distinct ``keys`` (none of them held now) at ``slots``."""
        if (self.taken + len(keys)) > MAX_FILL * len(self.vals):
            self._rebuild()
        mask = np.uint64(len(self.vals) - 1)
        pos = self._home(keys)
        todo = np.arange(len(keys))
        while len(todo):
            p = pos[todo]
            free = np.flatnonzero(self.vals[p] < 0)  # empty or a tombstone
            _, first = np.unique(p[free], return_index=True)  # one key per free position
            won = free[first]
            wp = p[won]
            self.taken += int(np.count_nonzero(self.vals[wp] == EMPTY))
            self.keys[wp], self.vals[wp] = keys[todo[won]], slots[todo[won]]
            lost = np.ones(len(todo), dtype=bool)
            lost[won] = False
            todo = todo[lost]
            pos[todo] = (p[lost] + np.uint64(1)) & mask

    def remove(self, keys: np.ndarray) -> None:
        """Forget held ``keys`` (keys not held are ignored)."""
        found, pos = self._find(keys)
        self.vals[pos[found]] = GONE

    def _find(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(held per key, its position when held)."""
        mask = np.uint64(len(self.vals) - 1)
        pos = self._home(keys)
        found = np.zeros(len(keys), dtype=bool)
        todo = np.arange(len(keys))
        while len(todo):
            p = pos[todo]
            v = self.vals[p]
            hit = (v >= 0) & (self.keys[p] == keys[todo])
            found[todo[hit]] = True
            go_on = ~hit & (v != EMPTY)
            todo = todo[go_on]
            pos[todo] = (p[go_on] + np.uint64(1)) & mask
        return found, pos.astype(np.int64)

    def _home(self, keys: np.ndarray) -> np.ndarray:
        with np.errstate(over="ignore"):
            return (keys.astype(np.uint64) * GOLDEN) >> np.uint64(64 - self.bits)

    def _rebuild(self) -> None:
        """The live keys into fresh arrays: the tombstones go."""
        live = self.vals >= 0
        keys, slots = self.keys[live], self.vals[live]
        self.keys[:] = 0
        self.vals[:] = EMPTY
        self.taken = 0
        self.put(keys, slots)
