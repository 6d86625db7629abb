"""Queries: free functions taking ``session=`` keyword-only (from async code, call them through
``run.io_bound``). Every filter value is a bound parameter; sort columns come from a fixed list.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, delete, func, update
from sqlmodel import Session, col, select

from netids.detect.event_records import SEVERITIES, severities_at_least
from netids.store.tables import EVENTS, Event, ModelVersion, SamplePacket, Sensor, utcnow


@dataclass(frozen=True, slots=True)
class EventFilter:
    """What the event list is narrowed to; ``None`` (or '') means no condition."""

    since: datetime | None = None  # events still going on at or after this time
    until: datetime | None = None  # events that started at or before this time
    sensor: str | None = None
    src: str | None = None  # address or CIDR ("10.0.0.0/8", "2001:db8::/32")
    dst: str | None = None
    proto: str | None = None  # "TCP", "UDP", "ARP", ...
    kind: str | None = None
    min_score: float | None = None  # on score_max
    min_severity: str | None = None  # "suspicious": suspicious and anomalous
    text: str | None = None  # substring of the explanation, case-insensitive


SORT_COLUMNS = tuple(c.name for c in EVENTS.columns)


def address_range(text: str) -> tuple[str, str]:
    """Lowest and highest :func:`~netids.store.tables.address_key` of an address or CIDR.

    >>> address_range("10.0.0.0/30")
    ('00000000000000000000ffff0a000000', '00000000000000000000ffff0a000003')

    Raises ``ValueError`` with a message for the user when ``text`` is neither.
    """
    try:
        net = ipaddress.ip_network(text.strip(), strict=False)
    except ValueError:
        raise ValueError(f"not an address or CIDR: {text!r}") from None
    lo, hi = int(net.network_address), int(net.broadcast_address)
    if net.version == 4:
        lo, hi = lo | 0xFFFF << 32, hi | 0xFFFF << 32
    return f"{lo:032x}", f"{hi:032x}"


def event_conditions(f: EventFilter | None) -> list[ColumnElement[bool]]:
    """SQL conditions of a filter; every value becomes a bound parameter."""
    if f is None:
        return []
    for name in ("sensor", "src", "dst", "proto", "kind", "min_severity", "text"):
        if "\x00" in (getattr(f, name) or ""):
            raise ValueError(f"{name} filter contains a NUL character")
    cond: list[ColumnElement[bool]] = []
    if f.since is not None:
        cond.append(col(Event.last_seen) >= f.since)
    if f.until is not None:
        cond.append(col(Event.first_seen) <= f.until)
    if f.sensor:
        cond.append(col(Event.sensor) == f.sensor)
    for text, key in ((f.src, col(Event.src_key)), (f.dst, col(Event.dst_key))):
        if text:
            lo, hi = address_range(text)
            cond.append(key.between(lo, hi))
    if f.proto:
        cond.append(func.upper(col(Event.proto)) == f.proto.upper())
    if f.kind:
        cond.append(col(Event.kind) == f.kind)
    if f.min_score is not None:
        cond.append(col(Event.score_max) >= f.min_score)
    if f.min_severity:
        if f.min_severity not in SEVERITIES:
            raise ValueError(f"severity must be one of {', '.join(SEVERITIES)}")
        cond.append(col(Event.severity).in_(severities_at_least(f.min_severity)))
    if f.text:
        cond.append(col(Event.explanation).icontains(f.text, autoescape=True))
    return cond


def query_events(
    *,
    session: Session,
    filter: EventFilter | None = None,
    sort: str = "last_seen",
    descending: bool = True,
    offset: int = 0,
    limit: int | None = 50,
) -> list[Event]:
    """One page of events, sorted by any column (ties broken by id, so pages never overlap)."""
    if sort not in SORT_COLUMNS:
        raise ValueError(f"cannot sort by {sort!r}; choose one of {', '.join(SORT_COLUMNS)}")
    column, tie = EVENTS.c[sort], col(Event.id)
    order = (column.desc(), tie.desc()) if descending else (column.asc(), tie.asc())
    stmt = select(Event).where(*event_conditions(filter)).order_by(*order).offset(max(offset, 0))
    if limit is not None:
        stmt = stmt.limit(limit)
    return list(session.exec(stmt))


def count_events(*, session: Session, filter: EventFilter | None = None) -> int:
    """How many events match (for the pager)."""
    stmt = select(func.count()).select_from(Event).where(*event_conditions(filter))
    return int(session.exec(stmt).one() or 0)


def get_event(event_id: str, *, session: Session) -> Event | None:
    return session.get(Event, event_id)


def event_samples(event_id: str, *, session: Session) -> list[SamplePacket]:
    stmt = (
        select(SamplePacket)
        .where(col(SamplePacket.event_id) == event_id)
        .order_by(col(SamplePacket.seq))
    )
    return list(session.exec(stmt))


def events_per_minute(
    *, session: Session, filter: EventFilter | None = None
) -> list[tuple[datetime, int, int]]:
    """(minute, events started, their packets) per minute with events, oldest first."""
    if session.get_bind().dialect.name == "sqlite":
        bucket: Any = func.strftime("%Y-%m-%d %H:%M:00", col(Event.first_seen))
    else:
        bucket = func.date_trunc("minute", col(Event.first_seen))
    stmt = (
        select(bucket.label("minute"), func.count(), func.sum(col(Event.packets)))
        .where(*event_conditions(filter))
        .group_by(bucket)
        .order_by(bucket)
    )
    out = []
    for minute, n, packets in session.exec(stmt):
        if isinstance(minute, str):
            minute = datetime.fromisoformat(minute)
        minute = minute.replace(tzinfo=UTC) if minute.tzinfo is None else minute.astimezone(UTC)
        out.append((minute, int(n), int(packets or 0)))
    return out


def top_sources(
    *, session: Session, filter: EventFilter | None = None, limit: int = 10
) -> list[tuple[str, int, int]]:
    """(source, events, packets) of the busiest sources; '' stands for merged 'many sources'."""
    return _top(col(Event.src), session, filter, limit)


def top_targets(
    *, session: Session, filter: EventFilter | None = None, limit: int = 10
) -> list[tuple[str, int, int]]:
    """(target, events, packets) of the most targeted destinations."""
    return _top(col(Event.dst), session, filter, limit)


def _top(
    address: Any, session: Session, f: EventFilter | None, limit: int
) -> list[tuple[str, int, int]]:
    n = func.count().label("n")
    packets = func.sum(col(Event.packets)).label("packets")
    stmt = (
        select(address, n, packets)
        .where(*event_conditions(f))
        .group_by(address)
        .order_by(n.desc(), packets.desc(), address)
        .limit(limit)
    )
    return [(a, int(c), int(p or 0)) for a, c, p in session.exec(stmt)]


def apply_retention(
    *,
    session: Session,
    max_age: timedelta | None = None,
    max_rows: int | None = None,
    now: datetime | None = None,
) -> int:
    """Delete events stored longer than ``max_age`` ago and beyond the ``max_rows`` stored
    last, with their samples; return how many events went.

    Age is the time the event was last written (``updated_at``), never its packets' time: the
    events of a recording from last year are as new as the analysis that found them.
    """
    doomed: list[Any] = []
    if max_age is not None:
        cutoff = (now or utcnow()) - max_age
        doomed.append(select(col(Event.id)).where(col(Event.updated_at) < cutoff))
    if max_rows is not None:
        doomed.append(
            select(col(Event.id))
            .order_by(col(Event.updated_at).desc(), col(Event.last_seen).desc(),
                      col(Event.id).desc())
            .offset(max_rows)
        )
    deleted = 0
    for ids in doomed:
        sub = select(ids.subquery().c.id)
        session.exec(delete(SamplePacket).where(col(SamplePacket.event_id).in_(sub)))
        result = session.exec(delete(Event).where(col(Event.id).in_(sub)))
        deleted += int(result.rowcount or 0)  # type: ignore[attr-defined]
    session.commit()
    return deleted


# sensors and model versions ----------------------------------------------------


def list_sensors(*, session: Session) -> list[Sensor]:
    return list(session.exec(select(Sensor).order_by(col(Sensor.name))))


def add_model_version(
    name: str,
    path: str,
    *,
    session: Session,
    details: dict[str, Any] | None = None,
    activate: bool = False,
) -> ModelVersion:
    row = ModelVersion(name=name, path=path, details=details or {})
    session.add(row)
    session.flush()
    if activate:
        _activate(row, session)
    session.commit()
    session.refresh(row)
    return row


def activate_model_version(name: str, *, session: Session) -> ModelVersion:
    """Make ``name`` the only active model version."""
    row = session.exec(select(ModelVersion).where(col(ModelVersion.name) == name)).first()
    if row is None:
        raise ValueError(f"no model version named {name!r}")
    _activate(row, session)
    session.commit()
    session.refresh(row)
    return row


def _activate(row: ModelVersion, session: Session) -> None:
    session.exec(update(ModelVersion).where(col(ModelVersion.id) != row.id).values(active=False))
    row.active = True
    session.add(row)


def active_model_version(*, session: Session) -> ModelVersion | None:
    return session.exec(select(ModelVersion).where(col(ModelVersion.active))).first()


def list_model_versions(*, session: Session) -> list[ModelVersion]:
    return list(session.exec(select(ModelVersion).order_by(col(ModelVersion.created_at).desc())))
