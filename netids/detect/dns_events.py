"""DNS alerts as anomaly events, on the path behaviour alerts take
(:mod:`netids.detect.behaviour_events`): an alert's event is an episode of its key (a client
and a domain, or a client's NXDOMAINs); an escalation within ``hold`` of the episode's last
alert updates the same event, a later one opens a new event, and an episode quiet for
``hold`` is closed. At most ``capacity`` are open (the oldest close first). Evidence that
suppression holds back still grows the open event (its count, last time and why), so the
event is closed with the whole episode, as payload events are.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections import OrderedDict

from netids.detect.behaviour_base import BehaviourAlert
from netids.detect.behaviour_dns import DnsConfig, DnsDetector
from netids.detect.dns import DnsRecord
from netids.detect.event_records import BEHAVIOUR_KINDS, EventUpdate, behaviour_score


class DnsEvents:
    """The DNS detector and the events of its alerts, for one traffic stream.

    >>> nx = [DnsRecord(float(i), "10.0.0.9", "10.0.0.1", True, 0, 3, 1, f"q{i}x.example", i)
    ...       for i in range(50)]
    >>> d = DnsEvents()
    >>> (e,), closed = d.update(nx, now=49.0, threshold=0.999)
    >>> e.kind, e.src, e.dst, e.dst_port, e.proto, e.packets, closed
    ('NXDOMAIN burst', '10.0.0.9', '10.0.0.1', 53, 'UDP', 50, [])
    >>> [c.id == e.id for c in d.flush()]
    [True]
    """

    def __init__(self, config: DnsConfig | None = None, capacity: int = 4096) -> None:
        self.detector = DnsDetector(config)
        self.hold = self.detector.config.suppress_for
        self.capacity = capacity
        self.open: OrderedDict[str, EventUpdate] = OrderedDict()  # alert key -> its event
        self.opened = 0  # events opened so far (an escalation updates its event)
        self.records = 0  # DNS records folded in
        self.alerts = 0  # alerts turned into events or event updates

    def learn(self, records: list[DnsRecord]) -> None:
        """This network's normal, from benign records (:meth:`DnsDetector.learn`)."""
        self.detector.learn(records)

    def update(self, records: list[DnsRecord] | tuple[DnsRecord, ...], now: float,
               threshold: float) -> tuple[list[EventUpdate], list[EventUpdate]]:
        """Fold in one batch's records; the events they opened or grew, and those closed."""
        self.records += len(records)
        updates: list[EventUpdate] = []
        closed: list[EventUpdate] = []
        for alert in self.detector.update(records):
            self.alerts += 1
            updates.append(self._event(alert, threshold, closed))
        for alert in self.detector.take_grown():  # grows its open event, not handed on
            old = self.open.get(alert.key)
            if old is not None:
                self.open[alert.key] = dataclasses.replace(
                    old, last_seen=max(old.last_seen, alert.last),
                    packets=max(old.packets, alert.count), explanation=alert.why)
        quiet = [k for k, e in self.open.items() if e.last_seen + self.hold < now]
        return updates, closed + [self.open.pop(k) for k in quiet]

    def flush(self) -> list[EventUpdate]:
        """The stream ended: every open event, closed."""
        closed = list(self.open.values())
        self.open.clear()
        return closed

    def _event(self, alert: BehaviourAlert, threshold: float,
               closed: list[EventUpdate]) -> EventUpdate:
        tally = self.detector.domains.peek(alert.targets[0]) if not alert.source else None
        fresh = _alert_event(alert, threshold, tally.clients.estimate if tally else 1)
        old = self.open.pop(alert.key, None)
        if old is not None and alert.first <= old.last_seen + self.hold:
            fresh = dataclasses.replace(fresh, id=old.id, first_seen=old.first_seen,
                                        score_max=max(old.score_max, fresh.score_max),
                                        score_mean=max(old.score_mean, fresh.score_mean))
        else:
            if old is not None:
                closed.append(old)
            self.opened += 1
        self.open[alert.key] = fresh
        while len(self.open) > self.capacity:
            closed.append(self.open.popitem(last=False)[1])
        return fresh


def _alert_event(alert: BehaviourAlert, threshold: float, clients: int) -> EventUpdate:
    """The event of a DNS alert: from the client (or "" for ``clients`` of them) to the
    resolver it asked (an alert's last target)."""
    score = behaviour_score(alert.severity)
    return EventUpdate(
        id=uuid.uuid4().hex, first_seen=alert.first, last_seen=alert.last, src=alert.source,
        dst=alert.targets[-1], src_port=None, dst_port=53, proto="UDP",
        kind=BEHAVIOUR_KINDS[alert.kind], packets=alert.count, score_max=score,
        score_mean=score, severity="anomalous",
        explanation=alert.why, threshold=threshold, src_count=clients,
        dst_count=1)
