"""Deliberate load shedding: when live traffic outruns the pipeline, score a sample and count
everything, instead of letting the capture queue drop whole batches blindly.

Two pure pieces. :class:`LoadShedder` decides what share of the next batch to score from how
many batches wait in the capture queue (halve the share when the queue backs up, grow it back
when the queue is short). :func:`choose_sample` picks that share of a batch's packets, fairly
per destination: a destination with few packets keeps all of them and the heaviest
destinations (a flood's target) give up packets first, evenly spread over the batch, so a
flood is sampled while the rest of the traffic is still scored whole. Packets not chosen are
still decoded and counted (totals, protocols, packets per second); they skip context features,
the model and event aggregation, the costly part. If the queue stays long even at the
smallest share (``deep``), the packets not scored are counted without being decoded, and the
sample is every k-th frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from netids.detect.packets import PacketBatch


@dataclass(frozen=True, slots=True)
class SheddingConfig:
    """When and how far to shed."""

    enabled: bool = True  # False: score everything; a full queue then drops batches (counted)
    backlog_high: int = 6  # batches waiting in the capture queue from which the share halves
    backlog_low: int = 1  # at or below this many the share grows back
    min_share: float = 1 / 256  # the share never goes below this: some of everything is scored
    grow: float = 1.25  # factor the share grows by per batch while the queue is short

    def __post_init__(self) -> None:
        assert 0 < self.min_share <= 1 and self.grow > 1 and self.backlog_low < self.backlog_high

    @classmethod
    def for_backlog(cls, enabled: bool, backlog: int, min_share: float) -> SheddingConfig:
        """Shed from ``backlog`` waiting batches, grow back at a quarter of it."""
        return cls(enabled=enabled, backlog_high=backlog, backlog_low=max(0, backlog // 4),
                   min_share=min_share)


class LoadShedder:
    """The share of packets to score, steered by the capture queue's backlog.

    >>> s = LoadShedder(SheddingConfig(backlog_high=4, backlog_low=1))
    >>> s.share_for(backlog=0), s.share_for(backlog=5), s.share_for(backlog=6)
    (1.0, 0.5, 0.25)
    >>> s.share_for(backlog=3), s.share_for(backlog=0) > 0.25
    (0.25, True)
    """

    def __init__(self, config: SheddingConfig | None = None) -> None:
        self.config = config or SheddingConfig()
        self.share = 1.0
        self.deep = False  # at the smallest share and still behind: do not even decode the rest

    def share_for(self, backlog: int) -> float:
        """The share of the next batch to score, given ``backlog`` batches waiting behind it."""
        c = self.config
        if not c.enabled:
            return 1.0
        self.deep = backlog >= c.backlog_high and self.share <= c.min_share
        if backlog >= c.backlog_high:
            self.share = max(c.min_share, self.share / 2)
        elif backlog <= c.backlog_low:
            self.share = min(1.0, self.share * c.grow)
        return self.share


def batches_to_merge(share: float, most: int) -> int:
    """How many waiting batches to score as one at ``share``: more the less is scored, so the
    fixed cost of a model call is shared, but never so many that one call at a large share
    keeps the pipeline busy while the capture queue overflows (about a quarter of a batch's
    packets scored per call at most).

    >>> [batches_to_merge(s, 16) for s in (1.0, 0.25, 1 / 16, 1 / 32, 1 / 256)]
    [1, 1, 4, 8, 16]
    """
    return max(1, min(most, int(1 / (4 * share))))


def destination_key(packets: PacketBatch) -> np.ndarray:
    """One uint64 per packet naming its destination address (IPv4, IPv6 or MAC alike)."""
    return packets.dst_hi.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15) ^ packets.dst_lo


def choose_sample(key: np.ndarray, share: float) -> np.ndarray:
    """Indices (ascending) of about ``share`` of the packets, at least one, fair per ``key``
    (the destination of each packet).

    Max-min fair: every destination keeps ``min(its packets, cap)`` packets, with the largest
    ``cap`` that stays within the budget, spread evenly over that destination's packets. When
    even one packet per destination is over budget, every k-th packet is kept.

    >>> flood_on_9 = np.array([9, 9, 1, 9, 9, 9, 2, 9, 9, 9], dtype=np.uint64)
    >>> choose_sample(flood_on_9, 0.5).tolist()  # 1 and 2 kept whole, the flood cut to 3 of 8
    [0, 2, 4, 6, 8]
    >>> choose_sample(np.arange(10, dtype=np.uint64), 0.3).tolist()  # all distinct: every k-th
    [0, 4, 9]
    """
    n = len(key)
    budget = max(1, int(np.ceil(share * n)))
    if budget >= n:
        return np.arange(n)
    order = np.argsort(key, kind="stable")
    sorted_key = key[order]
    starts = np.flatnonzero(np.r_[True, sorted_key[1:] != sorted_key[:-1]])
    counts = np.diff(np.r_[starts, n])
    if len(counts) > budget:  # more destinations than packets to score: every k-th packet
        return np.unique(np.linspace(0, n - 1, budget).round().astype(np.int64))
    cap = _fair_cap(counts, budget)
    group_count = np.repeat(counts, counts)
    rank = np.arange(n) - np.repeat(starts, counts)  # position within its destination
    keep_sorted = (rank * cap) % group_count < cap
    return np.sort(order[keep_sorted])


def _fair_cap(counts: np.ndarray, budget: int) -> int:
    """The largest cap with ``sum(min(counts, cap)) <= budget`` (at least 1)."""
    lo, hi = 1, int(counts.max())
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if int(np.minimum(counts, mid).sum()) <= budget:
            lo = mid
        else:
            hi = mid - 1
    return lo
