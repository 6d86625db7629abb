"""Connections of a scored stream: the connection tracker fed every packet the pipeline
decoded, shed or not.

Under overload the pipeline scores a sample and hands the rest on decoded but unscored
(:mod:`netids.detect.shedding`); the tracker still needs every packet to count packets and
bytes and to follow TCP state, so :class:`ConnFeed` merges the two back into time order (a
stable sort on timestamps: packets with the very same timestamp may be seen sample first). In
deep overload the rest is not even decoded: those packets are missing from the records, and
:attr:`ConnFeed.missed` counts them so the user is told.
"""

from __future__ import annotations

import numpy as np

from netids.detect.conn_records import ConnRecord
from netids.detect.connections import ConnConfig, ConnTracker
from netids.detect.keytable import TableStats
from netids.detect.packets import PacketBatch
from netids.detect.scored import ScoredBatch


class ConnFeed:
    """A :class:`ConnTracker` over scored batches, in stream order."""

    def __init__(self, config: ConnConfig | None = None) -> None:
        self.tracker = ConnTracker(config)
        self.missed = 0  # packets shed without decoding: not in any record

    def update(self, scored: ScoredBatch) -> list[ConnRecord]:
        """The records one scored batch completes (and in-progress snapshots it passes)."""
        packets = self.packets_of(scored)
        return self.tracker.update(packets) if len(packets) else []

    def flush(self) -> list[ConnRecord]:
        """The stream ended: every connection still open."""
        return self.tracker.flush()

    def stats(self) -> TableStats:
        return self.tracker.stats()

    def packets_of(self, scored: ScoredBatch) -> PacketBatch:
        """Every decoded packet of the batch, scored or shed, in time order; counts those
        shed undecoded as missed."""
        if scored.unread_ts is not None:
            self.missed += len(scored.unread_ts)
        rest = scored.unscored
        if rest is None or not len(rest):
            return scored.packets
        if not len(scored.packets):
            return rest
        both = PacketBatch.concat([scored.packets, rest])
        return both.take(np.argsort(both.ts, kind="stable"))

