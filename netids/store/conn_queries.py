"""Queries on stored connections: the Connections view's filter, pages and counts, the
connections behind an event, and their retention. Free functions taking ``session=``
keyword-only, like :mod:`netids.store.queries`; every value is a bound parameter.

An event links the connections behind it by query, not by stored links: the connections of
the event's sensor and protocol between its endpoints (either direction; one side only when
the event merged many sources or targets), on its ports when it has them, overlapping its time
window. A flood of a million packets therefore writes no link rows at all, and the pages read
at most :data:`COUNT_CAP` rows to say how many there are.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, delete, false, func, or_
from sqlmodel import Session, col, select

from netids.store.queries import address_range
from netids.store.tables import CONNECTIONS, Connection, Event, utcnow

COUNT_CAP = 100_000  # counts stop here ("100,000+"): a count never reads a flood's every row
SLACK = timedelta(seconds=1)  # an event's window is widened by this much each side
EVENT_PROTOCOLS = {"TCP": "tcp", "UDP": "udp", "ICMP": "icmp", "ICMPv6": "icmp"}
SORT_COLUMNS = tuple(c.name for c in CONNECTIONS.columns)


@dataclass(frozen=True, slots=True)
class ConnFilter:
    """What the connection list is narrowed to; ``None`` (or '') means no condition."""

    since: datetime | None = None  # connections still going on at or after this time
    until: datetime | None = None  # connections that started at or before this time
    sensor: str | None = None
    src: str | None = None  # originator address or CIDR
    dst: str | None = None  # responder address or CIDR
    host: str | None = None  # either side, address or CIDR
    proto: str | None = None  # "tcp", "udp", "icmp" (any case)
    state: str | None = None  # Zeek's conn_state: S0, SF, REJ, ...
    text: str | None = None  # substring of the uid, service or history, case-insensitive
    event: str | None = None  # an event id: the connections behind it


def conn_conditions(f: ConnFilter | None, *, session: Session) -> list[ColumnElement[bool]]:
    """SQL conditions of a filter. Raises ``ValueError`` in words for a bad address or a NUL."""
    if f is None:
        return []
    for name in ("sensor", "src", "dst", "host", "proto", "state", "text", "event"):
        if "\x00" in (getattr(f, name) or ""):
            raise ValueError(f"{name} filter contains a NUL character")
    cond: list[ColumnElement[bool]] = []
    if f.since is not None:
        cond.append(col(Connection.last_ts) >= f.since)
    if f.until is not None:
        cond.append(col(Connection.ts) <= f.until)
    if f.sensor:
        cond.append(col(Connection.sensor) == f.sensor)
    for text, key in ((f.src, col(Connection.orig_key)), (f.dst, col(Connection.resp_key))):
        if text:
            lo, hi = address_range(text)
            cond.append(key.between(lo, hi))
    if f.host:
        lo, hi = address_range(f.host)
        cond.append(or_(col(Connection.orig_key).between(lo, hi),
                        col(Connection.resp_key).between(lo, hi)))
    if f.proto:
        cond.append(col(Connection.proto) == f.proto.strip().lower())
    if f.state:
        cond.append(col(Connection.conn_state) == f.state.strip().upper())
    if f.text:
        cond.append(or_(*(c.icontains(f.text, autoescape=True) for c in (
            col(Connection.uid), col(Connection.service), col(Connection.history)))))
    if f.event:
        event = session.get(Event, f.event)
        cond.extend(event_conditions(event) if event is not None else [false()])
    return cond


def event_conditions(e: Event) -> list[ColumnElement[bool]]:
    """The connections behind event ``e`` (see the module's docstring)."""
    proto = EVENT_PROTOCOLS.get(e.proto)
    if proto is None or not (e.src_key or e.dst_key):  # ARP, IGMP, ...: no connections
        return [false()]
    orig, resp = col(Connection.orig_key), col(Connection.resp_key)
    if e.src_key and e.dst_key:
        pair = or_(and_(orig == e.src_key, resp == e.dst_key),
                   and_(orig == e.dst_key, resp == e.src_key))
    else:
        key = e.src_key or e.dst_key
        pair = or_(orig == key, resp == key)
    cond = [
        col(Connection.sensor) == e.sensor, col(Connection.proto) == proto, pair,
        col(Connection.ts) <= e.last_seen + SLACK, col(Connection.last_ts) >= e.first_seen - SLACK,
    ]
    for port in (e.src_port, e.dst_port):
        if port is not None and proto != "icmp":
            cond.append(or_(col(Connection.orig_p) == port, col(Connection.resp_p) == port))
    return cond


def query_connections(
    *, session: Session, filter: ConnFilter | None = None, sort: str = "ts",
    descending: bool = True, offset: int = 0, limit: int = 100,
) -> list[Connection]:
    """One page of connections, sorted by any column (ties broken by uid)."""
    if sort not in SORT_COLUMNS:
        raise ValueError(f"cannot sort by {sort!r}; choose one of {', '.join(SORT_COLUMNS)}")
    column, tie = CONNECTIONS.c[sort], col(Connection.uid)
    order = (column.desc(), tie.desc()) if descending else (column.asc(), tie.asc())
    stmt = (select(Connection).where(*conn_conditions(filter, session=session))
            .order_by(*order).offset(max(offset, 0)).limit(limit))
    return list(session.exec(stmt))


def count_connections(*, session: Session, filter: ConnFilter | None = None,
                      cap: int = COUNT_CAP) -> int:
    """How many connections match, counting at most ``cap`` + 1 (more than ``cap``: "cap+")."""
    inner = (select(col(Connection.uid)).where(*conn_conditions(filter, session=session))
             .limit(cap + 1).subquery())
    return int(session.exec(select(func.count()).select_from(inner)).one() or 0)


def apply_conn_retention(*, session: Session, max_age: timedelta,
                         now: datetime | None = None) -> int:
    """Delete connections written longer than ``max_age`` ago (by ``updated_at``, when they
    were stored, not their packets' time); return how many went."""
    cutoff = (now or utcnow()) - max_age
    result: Any = session.exec(delete(Connection).where(col(Connection.updated_at) < cutoff))
    session.commit()
    return int(result.rowcount or 0)
