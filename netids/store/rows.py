"""Event, sample and sensor rows as the writer sends them, and the upsert statements per
dialect (SQLAlchemy Core on PostgreSQL; straight to the driver on SQLite, about twice the rows
per second)."""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.dialects import postgresql, sqlite

from netids.detect.event_records import EventUpdate, Sample
from netids.store.tables import EVENTS, SAMPLES, SENSORS, address_key


def _ts(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def clean(text: str, size: int | None = None) -> str:
    """Text a database column takes: no NUL (PostgreSQL refuses it), at most ``size`` chars."""
    text = text.replace("\x00", "")
    return text if size is None else text[:size]


def event_row(u: EventUpdate, sensor: str, now: datetime) -> dict[str, Any]:
    """Column values of an event (the SQLite fast path builds the same as a tuple)."""
    return {
        "id": u.id,
        "sensor": clean(sensor, 64),
        "first_seen": _ts(u.first_seen),
        "last_seen": _ts(u.last_seen),
        "src": clean(u.src, 64),
        "src_key": address_key(u.src),
        "src_port": u.src_port,
        "dst": clean(u.dst, 64),
        "dst_key": address_key(u.dst),
        "dst_port": u.dst_port,
        "proto": clean(u.proto, 16),
        "kind": clean(u.kind, 64),
        "packets": u.packets,
        "score_max": u.score_max,
        "score_mean": u.score_mean,
        "severity": u.severity,
        "explanation": clean(u.explanation),
        "threshold": u.threshold,
        "src_count": u.src_count,
        "dst_count": u.dst_count,
        "updated_at": now,
    }


def sample_row(event_id: str, s: Sample) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "seq": s.seq,
        "ts": _ts(s.ts),
        "linktype": s.linktype,
        "wirelen": s.wirelen,
        "data": s.data,
        "score": s.score,
        "summary": clean(s.summary),
    }


def _insert(dialect: str, table: Any) -> Any:
    if dialect == "sqlite":
        return sqlite.insert(table)
    if dialect == "postgresql":
        return postgresql.insert(table)
    raise ValueError(f"unsupported database {dialect!r}")


class FastSQLiteUpsert:
    """The event upsert on SQLite with values converted once here (not per bind by SQLAlchemy)
    and handed as tuples to the driver's executemany: about twice the rows per second."""

    ORDER = (  # the parameter order of the compiled statement, i.e. the table's column order
        "id", "sensor", "first_seen", "last_seen", "src", "src_key", "src_port", "dst",
        "dst_key", "dst_port", "proto", "kind", "packets", "score_max", "score_mean",
        "severity", "explanation", "threshold", "src_count", "dst_count", "updated_at",
    )

    def __init__(self, stmt: Any) -> None:
        compiled = stmt.compile(dialect=sqlite.dialect(paramstyle="qmark"))
        assert tuple(compiled.positiontup or ()) == self.ORDER, compiled.positiontup
        self.sql = str(compiled)

    def execute(
        self, conn: Any, events: Iterable[EventUpdate], sensor: str, stamp: str
    ) -> None:
        """Upsert ``events`` inside ``conn``'s transaction; ``stamp`` is ``updated_at`` text."""
        ts, key = _sqlite_ts, address_key
        params = [
            (
                u.id, sensor, ts(u.first_seen), ts(u.last_seen), clean(u.src, 64), key(u.src),
                u.src_port, clean(u.dst, 64), key(u.dst), u.dst_port, clean(u.proto, 16),
                clean(u.kind, 64), u.packets, u.score_max, u.score_mean, u.severity,
                clean(u.explanation), u.threshold, u.src_count, u.dst_count, stamp,
            )
            for u in events
        ]
        conn.exec_driver_sql(self.sql, params)


def sqlite_text(value: datetime) -> str:
    """What SQLAlchemy's SQLite DATETIME stores for an aware datetime: naive UTC text."""
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")


_SECONDS_TEXT: dict[float, str] = {}


def _sqlite_ts(seconds: float) -> str:
    """``sqlite_text(datetime.fromtimestamp(seconds, UTC))``, rounded the same way, faster.

    >>> _sqlite_ts(1764000000.1234565), _sqlite_ts(-0.5), _sqlite_ts(1.9999999)
    ('2025-11-24 16:00:00.123456', '1969-12-31 23:59:59.500000', '1970-01-01 00:00:02.000000')
    """
    frac, whole = math.modf(seconds)
    us = round(frac * 1e6)
    if us >= 1_000_000:
        whole, us = whole + 1, us - 1_000_000
    elif us < 0:
        whole, us = whole - 1, us + 1_000_000
    prefix = _SECONDS_TEXT.get(whole)
    if prefix is None:
        if len(_SECONDS_TEXT) > 4096:
            _SECONDS_TEXT.clear()
        prefix = _SECONDS_TEXT[whole] = datetime.fromtimestamp(whole, UTC).strftime(
            "%Y-%m-%d %H:%M:%S."
        )
    return f"{prefix}{us:06d}"


def event_upsert(dialect: str) -> Any:
    table = EVENTS
    ins = _insert(dialect, table)
    keep = {"id", "sensor", "first_seen"}
    return ins.on_conflict_do_update(
        index_elements=["id"],
        set_={c.name: ins.excluded[c.name] for c in table.columns if c.name not in keep},
    )


def sample_insert(dialect: str) -> Any:
    return _insert(dialect, SAMPLES).on_conflict_do_nothing(
        index_elements=["event_id", "seq"]
    )


def sensor_upsert(dialect: str) -> Any:
    ins = _insert(dialect, SENSORS)
    return ins.on_conflict_do_update(
        index_elements=["name"],
        set_={"hostname": ins.excluded.hostname, "last_seen": ins.excluded.last_seen},
    )
