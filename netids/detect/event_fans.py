"""Fans of event aggregation: per (address, protocol, kind), how many distinct peers, until
they are "many" and the events merge (a spoofed flood's sources, a host flooding many).

The state is fixed-size: a :class:`~netids.detect.keytable.KeyTable` of ``capacity`` fans,
each holding at most ``limit`` peer hashes and a "many" flag, in numpy arrays. A flood from
new addresses recycles the idlest fans of its own kind, never the established ones (see the
key table). A fan idle for longer than the aggregator's gap starts again from nothing, as if
it had been dropped, which it is once its slot is recycled.

>>> fans = FanTable(capacity=64, limit=2)
>>> group = np.zeros(4, np.uint64); peers = np.arange(4, dtype=np.uint64)
>>> fans.mark(group[:2], peers[:2], np.zeros(2), cutoff=-1.0).tolist()
[False, False]
>>> fans.mark(group[2:], peers[2:], np.ones(2), cutoff=-1.0).tolist()  # 4 peers: many
[True, True]
"""

from __future__ import annotations

import numpy as np

from netids.detect.keytable import KeyTable, TableStats


class FanTable:
    """Distinct peers per group key, bounded in keys and in peers per key."""

    def __init__(self, capacity: int, limit: int) -> None:
        self.table = KeyTable(capacity)
        self.limit = limit
        self.peers = np.zeros((capacity, limit), dtype=np.uint64)  # the first `count` are set
        self.count = np.zeros(capacity, dtype=np.int64)
        self.many = np.zeros(capacity, dtype=bool)
        self.last = np.full(capacity, -np.inf)

    def __len__(self) -> int:
        return len(self.table)

    def stats(self, name: str) -> TableStats:
        return self.table.stats(name)

    def clear(self) -> None:
        """Forget every fan (the stream ended)."""
        self.__init__(self.table.capacity, self.limit)  # type: ignore[misc]

    def mark(self, group: np.ndarray, peer: np.ndarray, ts: np.ndarray,
             cutoff: float) -> np.ndarray:
        """bool per packet: whether its group (uint64 hash) has more than ``limit`` distinct
        peers (uint64 hashes), counting this batch; fans last seen before ``cutoff`` start
        afresh."""
        out = np.zeros(len(group), dtype=bool)
        step = self.table.capacity // 4  # the table takes at most capacity / 2 new keys a call
        for lo in range(0, len(group), step):
            sl = slice(lo, lo + step)
            out[sl] = self._mark(group[sl], peer[sl], ts[sl], cutoff)
        return out

    def _mark(self, group: np.ndarray, peer: np.ndarray, ts: np.ndarray,
              cutoff: float) -> np.ndarray:
        if len(group) == 0:
            return np.zeros(0, dtype=bool)
        slots, new = self.table.lookup(group, ts)
        touched = np.unique(slots)
        fresh = touched[self.last[touched] < cutoff]
        fresh = np.union1d(fresh, slots[new])
        self.count[fresh], self.many[fresh] = 0, False
        np.maximum.at(self.last, slots, ts)
        open_ = ~self.many[slots]
        if open_.any():
            self._count(slots[open_], peer[open_])
        return self.many[slots]

    def _count(self, slots: np.ndarray, peer: np.ndarray) -> None:
        """Union the batch's peers with each fan's held ones; past ``limit`` the fan is many."""
        held_slots = np.unique(slots)
        n_held = self.count[held_slots]
        rows = np.repeat(held_slots, n_held)
        cols = np.arange(len(rows)) - np.repeat(np.cumsum(n_held) - n_held, n_held)
        owner, value = _distinct_pairs(np.concatenate([slots, rows]).astype(np.int64),
                                       np.concatenate([peer, self.peers[rows, cols]]))
        counts = np.bincount(owner, minlength=self.table.capacity)[held_slots]
        many = held_slots[counts > self.limit]
        self.many[many], self.count[many] = True, 0
        keep = ~self.many[owner]
        owner, value = owner[keep], value[keep]
        starts = np.searchsorted(owner, owner, side="left")  # owners come sorted
        self.peers[owner, np.arange(len(owner)) - starts] = value
        self.count[held_slots] = np.where(counts > self.limit, 0, counts)


def _distinct_pairs(owner: np.ndarray, value: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct (owner, value) pairs, sorted by owner then value: ``np.unique(axis=0)``'s
    result, from a lexsort (the structured sort behind ``axis=0`` was the slower part).

    >>> [a.tolist() for a in _distinct_pairs(np.array([2, 1, 2, 1]), np.array([5, 9, 5, 3]))]
    [[1, 1, 2], [3, 9, 5]]
    """
    order = np.lexsort((value, owner))
    owner, value = owner[order], value[order]
    keep = np.ones(len(owner), dtype=bool)
    keep[1:] = (owner[1:] != owner[:-1]) | (value[1:] != value[:-1])
    return owner[keep], value[keep]
