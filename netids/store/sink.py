"""The one path from scored batches to stored events, used by the live controller and by
``score --db`` alike: aggregate a batch's anomalies, close the events its time has passed,
write both to the store and, with ``--eve``, to the EVE file (:mod:`netids.store.eve`). With a
:class:`~netids.detect.tracking.ConnFeed` it also follows the stream's connections and stores
their records (every decoded packet counts, shed or not), and feeds them to the behaviour
detectors, whose alerts become events too (:mod:`netids.detect.behaviour_events`); the
one-shot records of a flood are counted, not handed on (:mod:`netids.detect.conn_fold`),
except to ``on_conns`` (``score --conn`` writes every record). What the payload checks found
in a batch (:mod:`netids.detect.payload`) becomes events on the same path
(:mod:`netids.detect.payload_events`), with or without connections, and so do the DNS
detectors' alerts on its DNS messages (:mod:`netids.detect.dns_events`). With a
store, events an allow-list rule covers are counted against the rule instead of being stored,
returned or sent to the EVE file (:mod:`netids.store.rules`).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from netids.detect.behaviour_events import BehaviourEvents
from netids.detect.conn_columns import ConnRecords
from netids.detect.conn_fold import FloodFold
from netids.detect.conn_records import ConnRecord
from netids.detect.dns import DnsRecord
from netids.detect.dns_events import DnsEvents
from netids.detect.event_records import EventConfig, EventUpdate
from netids.detect.events import EventAggregator
from netids.detect.keytable import TableStats
from netids.detect.packet_behaviour import PacketBehaviour, packet_only
from netids.detect.payload_events import PayloadEvents
from netids.detect.pipeline import Pipeline
from netids.detect.scored import ScoredBatch
from netids.detect.tracking import ConnFeed
from netids.store.eve import EveLog
from netids.store.rules import RuleBook
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
        self.behaviour = BehaviourEvents() if conns is not None else None
        # packet scores raised by the behaviour evidence (detect/packet_behaviour.py)
        self.packet_behaviour = PacketBehaviour(self.behaviour.detectors.evidence) \
            if self.behaviour is not None else None
        self.fold = FloodFold()  # a flood's one-shot records: counted, not stored
        self.payload = PayloadEvents()
        self.dns = DnsEvents()
        self._conns_closed = False
        # the behaviour events of a batch whose connections :meth:`rescore` followed
        self._pending: tuple[list[EventUpdate], list[EventUpdate]] | None = None
        self._flagged = 0  # packets anomalous through behaviour alone
        self._threshold = 1.0  # the packet model's last threshold, kept with behaviour events
        self.rules = RuleBook(store.engine) if store is not None else None

    @property
    def opened(self) -> int:
        """Events this stream opened, of the packet model and of the behaviour detectors."""
        return (self.aggregator.opened + self.payload.opened + self.dns.opened
                + (self.behaviour.opened if self.behaviour else 0))

    def learn_behaviour(self, records: list[ConnRecord]) -> None:
        """The behaviour detectors learn this network's normal from ``records`` (benign
        traffic that learning in place kept); call it on the thread that adds batches."""
        if self.behaviour is not None:
            self.behaviour.detectors.learn(records)

    def learn_dns(self, records: list[DnsRecord]) -> None:
        """The DNS detectors learn which domains this network asks many names of, from
        benign ``records``; call it on the thread that adds batches."""
        self.dns.learn(records)

    @property
    def behaviour_flagged(self) -> int:
        """Packets anomalous through their connection's behaviour alone, so far, as
        :meth:`add` got them (in-place learning may have held some back)."""
        return self._flagged

    def rescore(self, scored: ScoredBatch,
                nines: np.ndarray | None = None) -> tuple[ScoredBatch, np.ndarray | None]:
        """``scored`` with behaviour scores merged in, and the final nines (None when nothing
        changed). Its connections are followed first, each packet scored with what was known
        at its time; :meth:`add` then stores the behaviour events they raised."""
        if self.packet_behaviour is None or self.conns is None:
            return scored, None
        self.packet_behaviour.evidence.start()
        self._pending = self._connections(self.conns.update(scored), scored.threshold)
        return self.packet_behaviour.rescore(scored, nines)

    def add(self, scored: ScoredBatch) -> list[EventUpdate]:
        """Fold in one batch, in stream order; return the events it opened, grew or closed.
        Packets anomalous through behaviour alone make no packet event: their event is the
        behaviour detectors'."""
        if scored.by_behaviour is not None:
            self._flagged += int((scored.by_behaviour & scored.anomalous).sum())
        updates = self.aggregator.add(packet_only(scored))
        closed = self.aggregator.flush(float(scored.packets.ts[-1])) if len(scored) else []
        if len(scored) and (scored.findings or self.payload.open):
            found, ended = self.payload.update(scored.findings, float(scored.packets.ts[-1]),
                                               scored.threshold)
            updates, closed = updates + found, closed + ended
        if len(scored) and (scored.dns or self.dns.open):
            found, ended = self.dns.update(scored.dns, float(scored.packets.ts[-1]),
                                           scored.threshold)
            updates, closed = updates + found, closed + ended
        if self.conns is not None:
            found, ended = self._pending or self._connections(self.conns.update(scored),
                                                              scored.threshold)
            self._pending = None
            updates, closed = updates + found, closed + ended
        return self._write(updates, closed)

    def finish(self) -> list[EventUpdate]:
        """The stream ended: close every open event and connection."""
        last = self.close_connections()
        ended = self.behaviour.flush() if self.behaviour is not None else []
        ended += self.payload.flush() + self.dns.flush()
        written = last + self._write([], self.aggregator.flush() + ended)
        if self.rules is not None:
            self.rules.sync()  # the counts of what was suppressed
        return written

    def close_connections(self) -> list[EventUpdate]:
        """Hand on the connections still open (``ended`` = "end of input"), once; write and
        return the behaviour events they open, grow or close."""
        if self.conns is None or self._conns_closed:
            return []
        self._conns_closed = True
        return self._write(*self._connections(self.conns.flush(), self._threshold))

    def _connections(self, records: ConnRecords,
                     threshold: float) -> tuple[list[EventUpdate], list[EventUpdate]]:
        """Store and hand on ``records`` but a flood's one-shots; the behaviour events
        (opened or grown, closed)."""
        self._threshold = threshold
        kept = self.fold.keep(records)
        found: tuple[list[EventUpdate], list[EventUpdate]] = ([], [])
        if self.behaviour is not None and self.conns is not None:
            found = self.behaviour.update(kept, self.conns.tracker.now, threshold)
        if not records:
            return found
        self.connections += len(kept)
        if self.store is not None and kept:
            self.store.write_connections(kept)
        if self.on_conns is not None:
            self.on_conns(records)
        return found

    def _write(self, updates: list[EventUpdate], closed: list[EventUpdate]) -> list[EventUpdate]:
        if self.rules is not None:
            updates, closed = self.rules.keep(updates), self.rules.keep(closed)
        everything = updates + closed
        if everything and self.store is not None:
            self.store.write(everything)
        if everything and self.eve is not None:
            self.eve.write(updates, closed)
        return everything

    def tables(self, pipeline: Pipeline) -> list[TableStats]:
        """Size and evictions of every bounded table of the stream: ``pipeline``'s context
        tables, then the sink's own (:meth:`own_tables`)."""
        return pipeline.context.table_stats() + self.own_tables()

    def own_tables(self, connections: bool = True) -> list[TableStats]:
        """Size and evictions of the sink's own bounded tables: event aggregation's, the
        connection tracker's (unless ``connections`` is False: a connection log tells it)
        and the answers' memories."""
        conns = [self.conns.stats()] if connections and self.conns is not None else []
        answers = self.packet_behaviour.answers.stats() if self.packet_behaviour else []
        return self.aggregator.stats() + conns + answers
