"""Connection records of a flood, counted instead of handed on one by one.

A spoofed flood opens a connection per packet, and each ends as a *one-shot*: one packet, no
answer (an S0 SYN, a lone UDP datagram or ICMP echo). Handing every one to the behaviour
detectors and to the database costs tens of microseconds and a table row per flood packet,
many times what scoring the packet costs (``bench/bench_flood.py``), and the connections
table would grow by a row a packet for as long as the flood lasts. Yet such a record is no
evidence for any behaviour detector when its source sends nothing else (one failed pair makes
no scanner, one unanswered packet no login and no beacon), nor when the same source already
failed on the same (host, port) earlier in the batch (a scan counts distinct pairs).

So while a batch of records holds a flood (at least ``min_records`` one-shots, at least
``min_rate`` of them per second of the batch's span), :class:`FloodFold` lets go of those two
kinds of one-shot and counts them in :attr:`FloodFold.folded`. Everything else, every record
of a batch without a flood, and every in-progress snapshot, goes on unchanged. The price, paid
only during a flood: the single probe a very slow scanner sends while the flood lasts is not
counted towards it. ``score --conn`` still writes every record to its file.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from netids.detect.conn_columns import ConnColumns, ConnRecords
from netids.detect.conn_records import splitmix


@dataclass(frozen=True, slots=True)
class FoldConfig:
    """When a batch of records holds a flood."""

    min_records: int = 64  # one-shots in the batch
    min_rate: float = 200.0  # one-shots per second of their time span (taken as >= 1 s)


class FloodFold:
    """Drops the one-shots of floods from batches of records, counting them.

    >>> FloodFold().keep(ConnRecords([])) == []
    True
    """

    def __init__(self, config: FoldConfig | None = None) -> None:
        self.config = config or FoldConfig()
        self.folded = 0  # one-shots of floods counted, not handed on

    def keep(self, records: ConnRecords) -> ConnRecords:
        """The records of one batch that go on to the detectors and the store."""
        if not records.parts:
            return records
        (columns,) = records.parts
        fold = self.flood_rows(columns)
        if not fold.any():
            return records
        self.folded += int(fold.sum())
        return ConnRecords([columns.take(np.flatnonzero(~fold))])

    def flood_rows(self, c: ConnColumns) -> np.ndarray:
        """Which rows of ``c`` are one-shots of a flood (a boolean per row)."""
        one_shot = (c.pkts[:, 0] == 1) & (c.pkts[:, 1] == 0) & ~np.asarray(c.in_progress, bool)
        count = int(one_shot.sum())
        if count < self.config.min_records:
            return np.zeros(len(c), bool)
        ts = c.ts[one_shot]
        if count / max(float(ts.max() - ts.min()), 1.0) < self.config.min_rate:
            return np.zeros(len(c), bool)
        source = splitmix(c.addr[:, 0] ^ splitmix(c.addr[:, 1]))
        _, of_source, per_source = np.unique(source, return_inverse=True, return_counts=True)
        alone = per_source[of_source] == 1  # the source has no other record in the batch
        protocol = np.unique(np.asarray(c.proto), return_inverse=True)[1].astype(np.uint64)
        service = c.ports[:, 1].astype(np.uint64) << np.uint64(8) | protocol
        target = source
        for part in (c.addr[:, 2], c.addr[:, 3], service):
            target = splitmix(target ^ part)
        shots = np.flatnonzero(one_shot)
        shots = shots[np.argsort(c.ts[shots], kind="stable")]  # the earliest of each is kept
        first = np.zeros(len(c), bool)
        first[shots[np.unique(target[shots], return_index=True)[1]]] = True
        return one_shot & (alone | ~first)
