"""A bounded map from 64-bit keys to dense slots: least-recently-used eviction, with the
established keys protected from a flood of new ones.

Context statistics and event fans live in numpy arrays indexed by slot; this table decides
which slot a host, pair, socket or fan owns. Memory is fixed by ``capacity`` whatever the
traffic: when it is full, the slots idle longest are recycled in bulk (an eighth at a time),
so a scan across millions of addresses costs the same memory as a quiet network.

A key is *established* once it has been seen in at least ``min_packets`` packets over at
least ``min_age`` seconds: a long-standing host, not a spoofed address seen once. Eviction
takes the idlest keys that are not established first, so a flood of new addresses recycles
its own slots and leaves what netids knows about the network's regular hosts alone. At most
``protect_share`` of the slots are protected; past that the idlest established keys compete
like new ones (a table of nothing but old keys still takes new ones).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from itertools import repeat

import numpy as np


@dataclass(frozen=True, slots=True)
class TableStats:
    """One bounded table's occupancy, for the summary and the dashboard."""

    name: str
    size: int  # keys held now
    capacity: int  # keys held at most
    evicted: int  # keys recycled so far because the table was full
    protected: int = 0  # established keys held now (evicted only past protect_share)
    evicted_as: str = "evicted"  # what became of the evicted (open events: "merged")

    def text(self) -> str:
        """One line for the summary.

        >>> TableStats("src", 12, 65536, 3, 2).text()
        'src 12/65,536 (3 evicted)'
        """
        return f"{self.name} {self.size:,}/{self.capacity:,} ({self.evicted:,} {self.evicted_as})"


class KeyTable:
    """Slots for keys, looked up a batch at a time.

    >>> t = KeyTable(capacity=8)
    >>> slots, new = t.lookup(np.array([7, 9, 7], dtype=np.uint64), np.array([1.0, 2.0, 3.0]))
    >>> slots.tolist(), new.tolist()
    ([0, 1, 0], [True, True, False])
    """

    def __init__(self, capacity: int, min_packets: int = 8, min_age: float = 10.0,
                 protect_share: float = 0.5) -> None:
        assert capacity >= 8, "a table needs room for at least one eviction round"
        assert 0.0 <= protect_share <= 0.75, "new keys need room of their own"
        self.capacity = capacity
        self.min_packets, self.min_age = min_packets, min_age
        self.protect_share = protect_share
        self.slot_of: dict[int, int] = {}
        self.key_of = np.zeros(capacity, dtype=np.uint64)
        self.used = np.zeros(capacity, dtype=bool)
        self.last_seen = np.full(capacity, -np.inf)
        self.first_seen = np.full(capacity, np.inf)
        self.hits = np.zeros(capacity, dtype=np.int64)  # packets seen per slot
        self.free = np.arange(capacity - 1, -1, -1, dtype=np.int64)  # a stack: top at the end
        self.evicted = 0
        # told the slots about to be recycled, while their keys and state are still there
        # (the connection tracker writes out the connections it has to drop)
        self.on_evict: Callable[[np.ndarray], None] | None = None

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
        uslots = np.fromiter(map(self.slot_of.get, uniq.tolist(), repeat(-1)), np.int64, len(uniq))
        missing = np.flatnonzero(uslots < 0)
        if len(missing):
            if len(missing) > len(self.free):
                keep = uslots[uslots >= 0]
                self._evict(len(missing) - len(self.free), keep)
            new_slots = self.free[len(self.free) - len(missing):][::-1]
            self.free = self.free[:len(self.free) - len(missing)]
            uslots[missing] = new_slots
            self.key_of[new_slots] = uniq[missing]
            self.used[new_slots] = True
            self.slot_of.update(zip(uniq[missing].tolist(), new_slots.tolist(), strict=True))
        inverse = inverse.reshape(-1)
        slots = uslots[inverse]
        if len(uniq) == len(keys):  # one packet a key (a caller that grouped them first)
            self.last_seen[slots] = np.maximum(self.last_seen[slots], ts)
            self.first_seen[slots] = np.minimum(self.first_seen[slots], ts)
            self.hits[slots] += 1
        else:
            np.maximum.at(self.last_seen, slots, ts)
            np.minimum.at(self.first_seen, slots, ts)
            self.hits[uslots] += np.bincount(inverse, minlength=len(uniq))  # uslots distinct
        first_seen = np.zeros(len(keys), dtype=bool)
        first_seen[first[missing]] = True
        return slots, first_seen

    def contains(self, keys: np.ndarray) -> np.ndarray:
        """bool per key: whether it holds a slot now (nothing is created or refreshed)."""
        has = self.slot_of.__contains__
        return np.fromiter((has(k) for k in keys.tolist()), dtype=bool, count=len(keys))

    def release(self, slots: np.ndarray) -> None:
        """Free ``slots`` now (their keys ended), without counting them as evicted."""
        slots = np.asarray(slots, dtype=np.int64)
        deque(map(self.slot_of.__delitem__, self.key_of[slots].tolist()), maxlen=0)
        self._clear(slots)

    def established(self) -> np.ndarray:
        """bool per slot: held by a key seen often enough, for long enough, to be protected."""
        return (self.used & (self.hits >= self.min_packets)
                & (self.last_seen - self.first_seen >= self.min_age))

    def stats(self, name: str) -> TableStats:
        return TableStats(name, len(self), self.capacity, self.evicted,
                          int(self.established().sum()))

    def _evict(self, need: int, keep: np.ndarray) -> None:
        """Recycle at least ``need`` slots (an eighth of the table when fewer), idlest first,
        established keys last; the slots in ``keep`` (keys of the batch at hand) stay."""
        count = min(max(need, self.capacity // 8), int(self.used.sum()) - len(keep))
        protected = self.established()
        held = np.flatnonzero(protected)
        room = int(self.protect_share * self.capacity)
        if len(held) > room:  # the idlest established keys beyond the share compete too
            idle = np.argpartition(self.last_seen[held], len(held) - room - 1)
            protected[held[idle[:len(held) - room]]] = False
        # idleness, with every protected key later than every unprotected one
        age = np.where(protected, self.last_seen + 1e18, self.last_seen)
        age[~self.used] = np.inf
        age[keep] = np.inf
        victims = np.argpartition(age, count - 1)[:count]
        if self.on_evict is not None:
            self.on_evict(victims)
        deque(map(self.slot_of.__delitem__, self.key_of[victims].tolist()), maxlen=0)
        self._clear(victims)
        self.evicted += count

    def _clear(self, slots: np.ndarray) -> None:
        self.used[slots] = False
        self.last_seen[slots] = -np.inf
        self.first_seen[slots] = np.inf
        self.hits[slots] = 0
        self.free = np.concatenate([self.free, slots.astype(np.int64)])


def table_stats(tables: dict[str, KeyTable]) -> list[TableStats]:
    """The stats of named tables (the context engine's hosts, pairs, sockets, ...)."""
    return [table.stats(name) for name, table in tables.items()]
