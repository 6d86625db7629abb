"""Database tables (SQLModel): events, their sample packets, connections, model versions,
sensors and allow-list rules.

Named ``tables`` because "model" already means the network. Timestamps are timezone-aware UTC
on the Python side whatever the database (SQLite keeps them as naive UTC text). Addresses are
kept twice: as text for people and as ``*_key``, 32 hex digits of the 128-bit address
(IPv4-mapped for IPv4), whose text order is numeric order, so a CIDR filter is an indexed
``BETWEEN`` on any database. The schema is created and upgraded only by the Alembic migrations
in ``db/migrations``; change both together.
"""

from __future__ import annotations

import functools
import ipaddress
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, DateTime, LargeBinary, Text
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator
from sqlmodel import Field, SQLModel


class UTCDateTime(TypeDecorator[datetime]):
    """``DateTime(timezone=True)`` that always hands back aware UTC datetimes."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


@functools.lru_cache(maxsize=65536)
def address_key(text: str) -> str:
    """Sortable key of an address: 32 hex digits, IPv4 mapped into ``::ffff:0:0/96``; '' if none.

    >>> address_key("10.0.0.1")
    '00000000000000000000ffff0a000001'
    >>> address_key("") == address_key("02:00:00:00:00:01") == ""
    True
    """
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        return ""
    value = int(addr) | (0xFFFF << 32) if addr.version == 4 else int(addr)
    return f"{value:032x}"


class Event(SQLModel, table=True):
    """One anomaly event: packets with the same key, close in time (``netids.detect.events``)."""

    __tablename__ = "events"

    id: str = Field(primary_key=True, max_length=32)
    sensor: str = Field(index=True, max_length=64)
    first_seen: datetime = Field(sa_type=UTCDateTime, index=True)
    last_seen: datetime = Field(sa_type=UTCDateTime, index=True)
    src: str = Field(default="", max_length=64)  # "" = many sources (src_count says how many)
    src_key: str = Field(default="", index=True, max_length=32)
    src_port: int | None = None
    dst: str = Field(default="", max_length=64)
    dst_key: str = Field(default="", index=True, max_length=32)
    dst_port: int | None = None
    proto: str = Field(max_length=16)  # few distinct values: an index would not pay
    kind: str = Field(index=True, max_length=64)
    packets: int
    score_max: float = Field(index=True)
    score_mean: float
    severity: str = Field(max_length=16)  # three values; score_max is indexed
    explanation: str = Field(default="", sa_type=Text)
    threshold: float = 0.0
    src_count: int = 1  # revision 0002
    dst_count: int = 1  # revision 0002
    # when the event was last stored (its packets may be years older): retention goes by it
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, index=True)  # 0004


class SamplePacket(SQLModel, table=True):
    """A packet kept with its event, raw bytes included."""

    __tablename__ = "sample_packets"

    event_id: str = Field(
        primary_key=True, max_length=32, foreign_key="events.id", ondelete="CASCADE"
    )
    seq: int = Field(primary_key=True)
    ts: datetime = Field(sa_type=UTCDateTime)
    linktype: int
    wirelen: int
    data: bytes = Field(sa_type=LargeBinary)
    score: float
    summary: str = Field(default="", sa_type=Text)


class ModelVersion(SQLModel, table=True):
    """A trained checkpoint; exactly one is active at a time."""

    __tablename__ = "model_versions"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=128, unique=True)
    path: str = Field(max_length=1024)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    active: bool = Field(default=False, index=True)
    details: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)  # training metadata


class Sensor(SQLModel, table=True):
    """A process writing events (``Settings.sensor``); several may share one PostgreSQL."""

    __tablename__ = "sensors"

    name: str = Field(primary_key=True, max_length=64)
    hostname: str = Field(default="", max_length=255)
    first_seen: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    last_seen: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class Connection(SQLModel, table=True):
    """One connection record (Zeek's conn.log fields, ``netids.detect.conn_records``); an
    in-progress snapshot and the final record share the row (by ``uid``). Revision 0005."""

    __tablename__ = "connections"

    uid: str = Field(primary_key=True, max_length=32)
    sensor: str = Field(index=True, max_length=64)
    ts: datetime = Field(sa_type=UTCDateTime, index=True)  # first packet
    last_ts: datetime = Field(sa_type=UTCDateTime, index=True)  # ts + duration
    orig_h: str = Field(max_length=64)
    orig_key: str = Field(default="", index=True, max_length=32)
    orig_p: int
    resp_h: str = Field(max_length=64)
    resp_key: str = Field(default="", index=True, max_length=32)
    resp_p: int
    proto: str = Field(max_length=8)
    service: str | None = Field(default=None, max_length=32)
    duration: float | None = None
    orig_bytes: int | None = Field(default=None, sa_type=BigInteger)
    resp_bytes: int | None = Field(default=None, sa_type=BigInteger)
    conn_state: str = Field(index=True, max_length=8)
    missed_bytes: int = Field(default=0, sa_type=BigInteger)
    history: str | None = Field(default=None, sa_type=Text)
    orig_pkts: int = Field(sa_type=BigInteger)
    orig_ip_bytes: int = Field(sa_type=BigInteger)
    resp_pkts: int = Field(sa_type=BigInteger)
    resp_ip_bytes: int = Field(sa_type=BigInteger)
    orig_sizes: str = Field(default="", max_length=128)  # "517,21,..." (the first few)
    resp_sizes: str = Field(default="", max_length=128)
    in_progress: bool = False
    ended: str = Field(default="", max_length=16)
    # when the row was last written: retention goes by it, as for events
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, index=True)


class SuppressionRule(SQLModel, table=True):
    """An allow-list rule (``netids.detect.rules.Rule``; "" or NULL = any) and what it has
    suppressed: events it covered are not stored, so it counts them. Revision 0006."""

    __tablename__ = "rules"

    id: int | None = Field(default=None, primary_key=True)
    src: str = Field(default="", max_length=64)
    dst: str = Field(default="", max_length=64)
    dst_port: int | None = None
    kind: str = Field(default="", max_length=64)
    expires: datetime | None = Field(default=None, sa_type=UTCDateTime)
    note: str = Field(default="", sa_type=Text)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    created_by: str = Field(default="", max_length=64)
    events: int = Field(default=0, sa_type=BigInteger)  # events suppressed
    packets: int = Field(default=0, sa_type=BigInteger)  # their packets
    last_hit: datetime | None = Field(default=None, sa_type=UTCDateTime)


TABLES = (Event, SamplePacket, Connection, ModelVersion, Sensor, SuppressionRule)
EVENTS: Any = Event.__table__  # type: ignore[attr-defined]
SAMPLES: Any = SamplePacket.__table__  # type: ignore[attr-defined]
SENSORS: Any = Sensor.__table__  # type: ignore[attr-defined]
CONNECTIONS: Any = Connection.__table__  # type: ignore[attr-defined]
RULES: Any = SuppressionRule.__table__  # type: ignore[attr-defined]
