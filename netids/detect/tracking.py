"""Connections of a scored stream: the connection tracker fed the packets the pipeline
decoded, shed or not, as long as that is affordable.

Under overload the pipeline scores a sample and hands the rest on decoded but unscored
(:mod:`netids.detect.shedding`); the tracker needs every packet to count packets and bytes and
to follow TCP state, so :class:`ConnFeed` merges the two back into time order (a stable sort on
timestamps: packets with the very same timestamp may be seen sample first). That holds while
at least ``full_share`` of a batch is scored. Past that the tracker, whose cost is per
connection (a spoofed flood opens one per packet), would cost many times what shedding saves
(``bench/bench_shed_conn.py``), so it follows the scored sample only; in deep overload the
rest is not even decoded. Either way the packets left out are counted in
:attr:`ConnFeed.missed`, which the dashboard shows.
"""

from __future__ import annotations

import numpy as np

from netids.detect.conn_columns import ConnRecords
from netids.detect.connections import ConnConfig, ConnTracker
from netids.detect.keytable import TableStats
from netids.detect.packets import PacketBatch
from netids.detect.scored import ScoredBatch


class ConnFeed:
    """A :class:`ConnTracker` over scored batches, in stream order."""

    def __init__(self, config: ConnConfig | None = None, full_share: float = 1 / 8) -> None:
        self.tracker = ConnTracker(config)
        self.full_share = full_share  # below this scored share, shed packets are left out
        self.missed = 0  # packets left out of the records (shed, under heavy overload)

    def update(self, scored: ScoredBatch) -> ConnRecords:
        """The records one scored batch completes (and in-progress snapshots it passes)."""
        packets = self.packets_of(scored)
        return self.tracker.update(packets) if len(packets) else ConnRecords([])

    def flush(self) -> ConnRecords:
        """The stream ended: every connection still open."""
        return self.tracker.flush()

    def stats(self) -> TableStats:
        return self.tracker.stats()

    def packets_of(self, scored: ScoredBatch) -> PacketBatch:
        """Every decoded packet of the batch, scored or shed, in time order; only the scored
        ones below ``full_share``. Counts those left out as missed."""
        if scored.unread_ts is not None:
            self.missed += len(scored.unread_ts)
        rest = scored.unscored
        if rest is None or not len(rest):
            return scored.packets
        if len(scored.packets) < self.full_share * (len(scored.packets) + len(rest)):
            self.missed += len(rest)
            return scored.packets
        if not len(scored.packets):
            return rest
        both = PacketBatch.concat([scored.packets, rest])
        return both.take(np.argsort(both.ts, kind="stable"))

