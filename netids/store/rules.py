"""Allow-list rules in the database (table ``rules``), and :class:`RuleBook`, which the event
sink asks before it stores an event.

Suppressed events are not stored, shown live or sent to the EVE file: each rule counts the
events and packets it covered and when it last did, and the Rules page shows those counts.
The book reloads the rules when this process changes them, and every ``interval`` seconds
otherwise (another sensor sharing the database may have), and writes its counts then.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable
from datetime import UTC, datetime

from sqlalchemy import Engine, update
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session, col, select

from netids.detect.event_records import EventUpdate
from netids.detect.rules import Rule, RuleError, RuleSet
from netids.store.tables import RULES, SuppressionRule

log = logging.getLogger(__name__)

__all__ = ["Rule", "RuleBook", "RuleError", "add_rule", "list_rules", "remove_rule", "to_rule"]

SEEN_CAP = 100_000  # suppressed event ids remembered (to count each event once)
_changed = [0]  # bumped by add_rule / remove_rule: books in this process reload at once


def add_rule(rule: Rule, *, session: Session) -> SuppressionRule:
    """Store ``rule`` (already checked by :class:`Rule`); the stored row."""
    row = SuppressionRule(
        src=rule.src.strip(), dst=rule.dst.strip(), dst_port=rule.dst_port,
        kind=rule.kind.strip(), note=rule.note[:1000], created_by=rule.created_by[:64],
        expires=None if rule.expires is None else datetime.fromtimestamp(rule.expires, UTC),
    )
    session.add(row)
    session.commit()
    session.refresh(row)
    _changed[0] += 1
    return row


def remove_rule(rule_id: int, *, session: Session) -> bool:
    """Delete a rule; False when there was none with that id."""
    row = session.get(SuppressionRule, rule_id)
    if row is None:
        return False
    session.delete(row)
    session.commit()
    _changed[0] += 1
    return True


def list_rules(*, session: Session) -> list[SuppressionRule]:
    """Every rule, oldest first."""
    return list(session.exec(select(SuppressionRule).order_by(col(SuppressionRule.id))))


def to_rule(row: SuppressionRule) -> Rule:
    """A stored row as the pure :class:`Rule` the matcher compiles."""
    return Rule(src=row.src, dst=row.dst, dst_port=row.dst_port, kind=row.kind,
                expires=None if row.expires is None else row.expires.timestamp(),
                note=row.note, created_at=row.created_at.timestamp(),
                created_by=row.created_by, id=row.id)


class RuleBook:
    """The rules one event stream is checked against, and the counts of what they suppressed
    that are not written yet."""

    def __init__(self, engine: Engine, *, interval: float = 5.0) -> None:
        self.engine = engine
        self.interval = interval
        self.rules = RuleSet()
        self.suppressed = 0  # events suppressed by this book (each once)
        self._lock = threading.Lock()
        self._seen: OrderedDict[str, int] = OrderedDict()  # event id -> packets counted
        self._counts: dict[int, list[float]] = {}  # rule id -> [events, packets, last hit]
        self._loaded_at = -float("inf")
        self._generation = -1
        self.sync()

    def keep(self, updates: Iterable[EventUpdate]) -> list[EventUpdate]:
        """The updates no rule covers; the others are counted against their rule."""
        self._maybe_sync()
        rules = self.rules
        if not len(rules):
            return list(updates)
        now = time.time()
        kept = []
        for u in updates:
            rule = rules.match(u.src, u.dst, u.dst_port, u.kind, now=now)
            if rule is None or rule.id is None:
                kept.append(u)
            else:
                self._count(rule.id, u, now)
        return kept

    def sync(self) -> None:
        """Write the counts gathered and reload the rules; on a database error keep both."""
        with self._lock:
            counts, self._counts = self._counts, {}
        try:
            with self.engine.begin() as conn:
                for rule_id, (events, packets, last) in counts.items():
                    conn.execute(update(RULES).where(RULES.c.id == rule_id).values(
                        events=RULES.c.events + int(events),
                        packets=RULES.c.packets + int(packets),
                        last_hit=datetime.fromtimestamp(last, UTC)))
            with Session(self.engine) as session:
                rules = [to_rule(r) for r in list_rules(session=session)]
        except SQLAlchemyError as exc:
            log.warning("rules not synced (kept as they were): %s",
                        str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
            with self._lock:
                for rule_id, c in counts.items():
                    self._add(rule_id, *c)
            self._loaded_at = time.monotonic()
            return
        self.rules = RuleSet.of(rules)
        self._loaded_at = time.monotonic()

    def _maybe_sync(self) -> None:
        if _changed[0] != self._generation or \
                time.monotonic() - self._loaded_at >= self.interval:
            self._generation = _changed[0]
            self.sync()

    def _count(self, rule_id: int, u: EventUpdate, now: float) -> None:
        before = self._seen.pop(u.id, None)
        self._seen[u.id] = u.packets
        if len(self._seen) > SEEN_CAP:
            self._seen.popitem(last=False)
        if before is None:
            self.suppressed += 1
        with self._lock:
            self._add(rule_id, 1.0 if before is None else 0.0,
                      float(u.packets - (before or 0)), now)

    def _add(self, rule_id: int, events: float, packets: float, last: float) -> None:
        c = self._counts.setdefault(rule_id, [0.0, 0.0, 0.0])
        c[0] += events
        c[1] += packets
        c[2] = max(c[2], last)
