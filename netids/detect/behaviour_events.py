"""Behaviour alerts as anomaly events: what the behaviour detectors find on connection
records, turned into the :class:`~netids.detect.event_records.EventUpdate` records packet
events are, so storage, ``--eve``, the dashboard and the history show both alike.

An alert's event is an *episode* of its key (a scanner, a guesser on one server and
service): a later alert on the same key within ``hold`` seconds of the episode's last one (an
escalation the detectors let through) updates the same event; after that it opens a new one.
An episode quiet for ``hold`` is closed, so at most ``capacity`` are open (the oldest close
first). A behaviour event's score stands for its detector's severity, not a packet's
calibrated score: :func:`behaviour_score`, which :func:`~netids.detect.event_records.grade`
reads back whatever the threshold.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections import OrderedDict

from netids.detect.behaviour import BehaviourConfig, BehaviourDetectors
from netids.detect.behaviour_base import BehaviourAlert, in_order
from netids.detect.conn_records import ConnRecord
from netids.detect.event_records import BEHAVIOUR_KINDS, EventUpdate, behaviour_score

PROTOCOLS = {"tcp": "TCP", "udp": "UDP", "icmp": "ICMP"}  # conn.log's proto -> event proto
PAIR_KINDS = frozenset({"beacon", "exfiltration", "long_connection"})  # targets "host:port"


class BehaviourEvents:
    """The behaviour detectors and the events of their alerts, for one traffic stream.

    >>> from netids.detect.behaviour_base import record
    >>> b = BehaviourEvents()
    >>> probes = [record(ts=60.0 * p, uid=f"C{p}", resp_p=p) for p in range(1, 41)]
    >>> (e,), closed = b.update(probes, now=2400.0, threshold=0.999)
    >>> e.kind, e.src, e.dst, e.proto, e.packets, e.severity, closed
    ('vertical scan', '10.0.0.1', '10.0.0.2', 'TCP', 25, 'anomalous', [])
    >>> [c.id == e.id for c in b.flush()]
    [True]
    """

    def __init__(self, config: BehaviourConfig | None = None, capacity: int = 4096) -> None:
        self.detectors = BehaviourDetectors(config)
        self.hold = self.detectors.config.suppress_for
        self.capacity = capacity
        self.open: OrderedDict[str, EventUpdate] = OrderedDict()  # alert key -> its event
        self.alerts = 0  # alerts turned into events or event updates
        self.opened = 0  # events opened so far (an escalation updates its event)

    def update(self, records: list[ConnRecord], now: float,
               threshold: float) -> tuple[list[EventUpdate], list[EventUpdate]]:
        """Feed one batch's records; the events they opened or grew, and those closed (quiet
        for ``hold``, or pushed out by ``capacity``). ``threshold`` is the packet model's, kept
        with the event as packet events keep theirs."""
        updates: list[EventUpdate] = []
        closed: list[EventUpdate] = []
        for r in sorted(records, key=in_order):  # the detectors' own order
            for alert in self.detectors.update([r], now):  # one by one: each alert's record
                self.alerts += 1
                updates.append(self._event(alert, r, threshold, closed))
        return updates, closed + self._expire(now)

    def flush(self) -> list[EventUpdate]:
        """The stream ended: every open event, closed."""
        closed = list(self.open.values())
        self.open.clear()
        return closed

    def _event(self, alert: BehaviourAlert, r: ConnRecord, threshold: float,
               closed: list[EventUpdate]) -> EventUpdate:
        fresh = alert_event(alert, r, threshold)
        old = self.open.pop(alert.key, None)
        if old is not None and alert.first <= old.last_seen + self.hold:
            # the event starts where its first alert did, as the store keeps it (a late
            # record can start an escalation earlier; the stored row would then depend on
            # whether the writer flushed in between)
            fresh = dataclasses.replace(
                fresh, id=old.id, first_seen=old.first_seen,
                score_max=max(old.score_max, fresh.score_max),
                score_mean=max(old.score_mean, fresh.score_mean))
        elif old is not None:
            closed.append(old)
        if old is None or fresh.id != old.id:
            self.opened += 1
        self.open[alert.key] = fresh
        while len(self.open) > self.capacity:
            closed.append(self.open.popitem(last=False)[1])
        return fresh

    def _expire(self, now: float) -> list[EventUpdate]:
        quiet = [k for k, e in self.open.items() if e.last_seen + self.hold < now]
        return [self.open.pop(k) for k in quiet]


def alert_event(alert: BehaviourAlert, r: ConnRecord, threshold: float) -> EventUpdate:
    """A new event of ``alert``, raised on record ``r`` (whose protocol the event takes).

    >>> from netids.detect.behaviour_base import record
    >>> a = BehaviourAlert("brute_force", "high", "10.0.0.9", ("2001:db8::5:22",), "ssh",
    ...                    0.0, 240.0, 31, ("C1",), "31 SSH sessions ...", "k")
    >>> e = alert_event(a, record(orig_h="10.0.0.9"), 0.999)
    >>> e.kind, e.dst, e.dst_port, e.packets, e.explanation
    ('brute force', '2001:db8::5', 22, 31, '31 SSH sessions ...')
    """
    dst, dst_port, dst_count = "", None, max(alert.count, len(alert.targets))
    if (alert.service is not None or alert.kind in PAIR_KINDS) and alert.targets:  # host:port
        host, _, port = alert.targets[0].rpartition(":")
        dst, dst_port, dst_count = host, int(port), 1
    elif len(alert.targets) == 1:  # one host scanned
        dst, dst_count = alert.targets[0], 1
    proto = PROTOCOLS.get(r.proto, r.proto.upper())
    if proto == "ICMP" and ":" in r.orig_h:
        proto = "ICMPv6"
    score = behaviour_score(alert.severity)
    return EventUpdate(
        id=uuid.uuid4().hex, first_seen=alert.first, last_seen=alert.last, src=alert.source,
        dst=dst, src_port=None, dst_port=dst_port, proto=proto,
        kind=BEHAVIOUR_KINDS[alert.kind], packets=alert.count, score_max=score,
        score_mean=score, severity="anomalous", explanation=alert.why, threshold=threshold,
        src_count=1, dst_count=dst_count)
