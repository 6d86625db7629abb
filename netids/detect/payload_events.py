"""Payload findings as anomaly events, on the path behaviour alerts take
(:mod:`netids.detect.behaviour_events`): one event per (source, target, kind) at a time; a
finding on an open event grows it, and the event is handed on again only when it escalates
(a higher severity, or ten times the packets it was last handed on with), as
:class:`~netids.detect.behaviour_base.Suppressor` rules. An event quiet for ``hold`` (1 h)
is closed with its last state; the next finding on its key opens a new one.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections import OrderedDict

from netids.detect.behaviour_base import SEVERITIES, Suppressor
from netids.detect.event_records import BEHAVIOUR_KINDS, EventUpdate, Sample, behaviour_score
from netids.detect.payload import WHY_LIMIT, PayloadFinding


class PayloadEvents:
    """The events of one stream's payload findings.

    >>> f = PayloadFinding("web_attack", "high", "SQL injection", "SQL injection in ...", 5.0,
    ...                    "10.0.0.9", "10.0.0.5", 40000, 80, 3, b"", 60, 1, "TCP ...")
    >>> p = PayloadEvents()
    >>> (e,), _ = p.update([f, dataclasses.replace(f, ts=6.0)], now=6.0, threshold=0.999)
    >>> e.kind, e.src, e.dst, e.dst_port, e.packets, e.explanation
    ('web attack', '10.0.0.9', '10.0.0.5', 80, 2, 'SQL injection in ...')
    >>> p.update([dataclasses.replace(f, ts=60.0)], now=60.0, threshold=0.999)  # suppressed
    ([], [])
    >>> [(c.id == e.id, c.packets) for c in p.flush()]
    [(True, 3)]
    """

    def __init__(self, hold: float = 3600.0, capacity: int = 4096, samples: int = 5) -> None:
        self.hold, self.capacity, self.samples = hold, capacity, samples
        self.suppressor = Suppressor(hold=hold)
        self.open: OrderedDict[tuple[str, str, str], EventUpdate] = OrderedDict()
        self.opened = 0
        self.findings = 0  # findings folded in

    def update(self, findings: list[PayloadFinding] | tuple[PayloadFinding, ...], now: float,
               threshold: float) -> tuple[list[EventUpdate], list[EventUpdate]]:
        """Fold in one batch's findings (in packet order); the events handed on (opened or
        escalated), and those closed (quiet for ``hold``, or pushed out by ``capacity``)."""
        handed: dict[str, EventUpdate] = {}
        closed: list[EventUpdate] = []
        self.findings += len(findings)
        for f in findings:
            event = self._grow(f, threshold, closed)
            if self.suppressor.allow("\x1f".join(_key(f)), f.ts, f.severity, event.packets):
                handed[event.id] = event
        for event in handed.values():  # the state the batch left each event in
            handed[event.id] = self.open.get(_key_of(event), event)
        quiet = [k for k, e in self.open.items() if e.last_seen + self.hold < now]
        closed += [self.open.pop(k) for k in quiet]
        return list(handed.values()), closed

    def flush(self) -> list[EventUpdate]:
        """The stream ended: every open event, closed."""
        closed = list(self.open.values())
        self.open.clear()
        return closed

    def _grow(self, f: PayloadFinding, threshold: float,
              closed: list[EventUpdate]) -> EventUpdate:
        key = _key(f)
        old = self.open.pop(key, None)
        if old is not None and f.ts > old.last_seen + self.hold:
            closed.append(old)
            old = None
        sample = Sample(0, f.ts, f.frame, f.wirelen, f.linktype, behaviour_score(f.severity),
                        f.summary)
        if old is None:
            self.opened += 1
            event = _event(f, threshold, sample)
        else:
            worse = SEVERITIES.index(f.severity) > SEVERITIES.index(_severity(old))
            score = behaviour_score(f.severity) if worse else old.score_max
            kept = len(old.new_samples) < self.samples
            event = dataclasses.replace(
                old, first_seen=min(old.first_seen, f.ts), last_seen=max(old.last_seen, f.ts),
                packets=old.packets + 1, score_max=score, score_mean=score,
                explanation=_explain(old.explanation, f, worse), threshold=threshold,
                new_samples=old.new_samples + ((dataclasses.replace(
                    sample, seq=len(old.new_samples)),) if kept else ()))
        self.open[key] = event
        while len(self.open) > self.capacity:
            closed.append(self.open.popitem(last=False)[1])
        return event


def _explain(why: str, f: PayloadFinding, worse: bool) -> str:
    """The why of an event grown by ``f``: the worst finding's words, and the name of every
    other kind of attack that came with it.

    >>> f = PayloadFinding("web_attack", "high", "SQL injection", "SQL injection in ...", 5.0,
    ...                    "10.0.0.9", "10.0.0.5", 40000, 80, 3, b"", 60, 1, "TCP ...")
    >>> _explain("path traversal in the URI ...", f, worse=False)
    'path traversal in the URI ...; also SQL injection'
    """
    if worse:
        return f.why
    if f.what in why or len(why) > WHY_LIMIT - 40:
        return why
    return f"{why}; also {f.what}"


def _key(f: PayloadFinding) -> tuple[str, str, str]:
    return f.src, f.dst, f.kind


def _key_of(event: EventUpdate) -> tuple[str, str, str]:
    kind = next(k for k, name in BEHAVIOUR_KINDS.items() if name == event.kind)
    return event.src, event.dst, kind


def _severity(event: EventUpdate) -> str:
    return min(SEVERITIES, key=lambda s: abs(behaviour_score(s) - event.score_max))


def _event(f: PayloadFinding, threshold: float, sample: Sample) -> EventUpdate:
    score = behaviour_score(f.severity)
    request = f.kind != "malware_download"  # on a server: its port is the target's
    return EventUpdate(
        id=uuid.uuid4().hex, first_seen=f.ts, last_seen=f.ts, src=f.src, dst=f.dst,
        src_port=None if request else f.sport, dst_port=f.dport if request else None,
        proto="TCP", kind=BEHAVIOUR_KINDS[f.kind], packets=1, score_max=score,
        score_mean=score, severity="anomalous", explanation=f.why, threshold=threshold,
        src_count=1, dst_count=1, new_samples=(sample,))
