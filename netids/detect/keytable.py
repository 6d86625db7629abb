"""A bounded map from 64-bit keys to dense slots, with least-recently-used eviction.

Context statistics live in numpy arrays indexed by slot; this table decides which slot a
host, pair or socket owns. Memory is fixed by ``capacity`` whatever the traffic: when it is
full, the slots idle longest are recycled in bulk (an eighth at a time), so a scan across
millions of addresses costs the same memory as a quiet network.
"""

from __future__ import annotations

import numpy as np


class KeyTable:
    """Slots for keys, looked up a batch at a time.

    >>> t = KeyTable(capacity=8)
    >>> slots, new = t.lookup(np.array([7, 9, 7], dtype=np.uint64), np.array([1.0, 2.0, 3.0]))
    >>> slots.tolist(), new.tolist()
    ([0, 1, 0], [True, True, False])
    """

    def __init__(self, capacity: int) -> None:
        assert capacity >= 8, "a table needs room for at least one eviction round"
        self.capacity = capacity
        self.slot_of: dict[int, int] = {}
        self.key_of = np.zeros(capacity, dtype=np.uint64)
        self.used = np.zeros(capacity, dtype=bool)
        self.last_seen = np.full(capacity, -np.inf)
        self.free = list(range(capacity - 1, -1, -1))
        self.evicted = 0

    def __len__(self) -> int:
        return len(self.slot_of)

    def lookup(self, keys: np.ndarray, ts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Slot of every key, creating slots for unseen keys.

        Returns ``(slots, first_seen)``: ``first_seen`` is True on the first packet of a key
        that had no slot before this call; its slot may be a recycled one, so callers reset
        their per-slot state at ``slots[first_seen]``.
        """
        uniq, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
        assert len(uniq) <= self.capacity // 2, "look up at most capacity / 2 keys at once"
        get = self.slot_of.get
        found = [get(k, -1) for k in uniq.tolist()]
        uslots = np.array(found, dtype=np.int64)
        missing = np.flatnonzero(uslots < 0)
        if len(missing):
            if len(missing) > len(self.free):
                keep = uslots[uslots >= 0]
                self._evict(len(missing) - len(self.free), keep)
            new_slots = np.array([self.free.pop() for _ in range(len(missing))], dtype=np.int64)
            uslots[missing] = new_slots
            self.key_of[new_slots] = uniq[missing]
            self.used[new_slots] = True
            self.slot_of.update(zip(uniq[missing].tolist(), new_slots.tolist(), strict=True))
        slots = uslots[inverse]
        np.maximum.at(self.last_seen, slots, ts)
        first_seen = np.zeros(len(keys), dtype=bool)
        first_seen[first[missing]] = True
        return slots, first_seen

    def contains(self, keys: np.ndarray) -> np.ndarray:
        """bool per key: whether it holds a slot now (nothing is created or refreshed)."""
        has = self.slot_of.__contains__
        return np.fromiter((has(k) for k in keys.tolist()), dtype=bool, count=len(keys))

    def _evict(self, need: int, keep: np.ndarray) -> None:
        count = min(max(need, self.capacity // 8), int(self.used.sum()) - len(keep))
        age = np.where(self.used, self.last_seen, np.inf)
        age[keep] = np.inf
        victims = np.argpartition(age, count - 1)[:count]
        for key in self.key_of[victims].tolist():
            del self.slot_of[key]
        self.used[victims] = False
        self.last_seen[victims] = -np.inf
        self.free.extend(victims.tolist())
        self.evicted += count
