"""The one path from scored batches to stored events, used by the live controller and by
``score --db`` alike: aggregate a batch's anomalies, close the events its time has passed,
write both to the store and, with ``--eve``, to the EVE file (:mod:`netids.store.eve`). With a
:class:`~netids.detect.tracking.ConnFeed` it also follows the stream's connections and stores
their records (every decoded packet counts, shed or not).
"""

from __future__ import annotations

from collections.abc import Callable

from netids.detect.conn_records import ConnRecord
from netids.detect.event_records import EventConfig, EventUpdate
from netids.detect.events import EventAggregator
from netids.detect.keytable import TableStats, table_stats
from netids.detect.pipeline import Pipeline
from netids.detect.scored import ScoredBatch
from netids.detect.tracking import ConnFeed
from netids.store.eve import EveLog
from netids.store.writer import EventStore


class EventSink:
    """Events of one traffic stream (state carries across batches), written to ``store``
    when there is one, and to the EVE file when there is one; the updates are also returned for
    whoever shows them live."""

    def __init__(self, store: EventStore | None, config: EventConfig | None = None,
                 eve: EveLog | None = None, conns: ConnFeed | None = None,
                 on_conns: Callable[[list[ConnRecord]], None] | None = None) -> None:
        self.aggregator = EventAggregator(config)
        self.store = store
        self.eve = eve
        self.conns = conns  # None: connections are not followed
        self.on_conns = on_conns  # also handed each batch's records (``score --conn``)
        self.connections = 0  # records handed on (snapshots included)
        self._conns_closed = False

    def add(self, scored: ScoredBatch) -> list[EventUpdate]:
        """Fold in one batch, in stream order; return the events it opened, grew or closed."""
        updates = self.aggregator.add(scored)
        closed = self.aggregator.flush(float(scored.packets.ts[-1])) if len(scored) else []
        if self.conns is not None:
            self._connections(self.conns.update(scored))
        return self._write(updates, closed)

    def finish(self) -> list[EventUpdate]:
        """The stream ended: close every open event and connection."""
        self.close_connections()
        return self._write([], self.aggregator.flush())

    def close_connections(self) -> None:
        """Hand on the connections still open (``ended`` = "end of input"), once."""
        if self.conns is not None and not self._conns_closed:
            self._conns_closed = True
            self._connections(self.conns.flush())

    def _connections(self, records: list[ConnRecord]) -> None:
        if not records:
            return
        self.connections += len(records)
        if self.store is not None:
            self.store.write_connections(records)
        if self.on_conns is not None:
            self.on_conns(records)

    def _write(self, updates: list[EventUpdate], closed: list[EventUpdate]) -> list[EventUpdate]:
        everything = updates + closed
        if everything and self.store is not None:
            self.store.write(everything)
        if everything and self.eve is not None:
            self.eve.write(updates, closed)
        return everything

    def tables(self, pipeline: Pipeline) -> list[TableStats]:
        """Size and evictions of every bounded table of the stream: ``pipeline``'s context
        tables, then event aggregation's."""
        context = pipeline.context
        conns = [self.conns.stats()] if self.conns is not None else []
        return (table_stats(context.tables) + [context.arp.stats()] + self.aggregator.stats()
                + conns)
