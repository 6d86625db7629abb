"""The database shell: the engine, schema upgrades, the batched event writer, queries, retention.

One engine per process, made by :func:`open_database` (which also runs ``upgrade head``).
:class:`EventStore` owns a writer thread: :meth:`EventStore.write` only merges updates into a
bounded in-memory queue and returns at once, so the pipeline (sync or asyncio) never waits on
the database. The thread writes everything queued in one transaction (executemany upserts:
SQLAlchemy Core on PostgreSQL, straight to the driver on SQLite) at least every
``flush_interval`` seconds; when the database is locked or away the queue is kept and retried
with backoff, and :attr:`EventStore.stats` shows it. Upserts by event id make every write
idempotent, so a retried batch never duplicates anything.

Queries are free functions taking ``session=`` keyword-only; from async code call them through
``run.io_bound``. Every filter value is a bound parameter; sort columns come from a fixed list.
"""

from __future__ import annotations

import atexit
import ipaddress
import logging
import math
import socket
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import ColumnElement, Engine, create_engine, delete, event, func, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import InterfaceError, OperationalError, SQLAlchemyError
from sqlalchemy.pool import StaticPool
from sqlmodel import Session, col, select

from netids.config import PROJECT_ROOT, StorageSettings
from netids.detect.events import SEVERITIES, EventUpdate, Sample, severities_at_least
from netids.store.tables import (
    CaptureSession,
    Event,
    ModelVersion,
    SamplePacket,
    Sensor,
    address_key,
    utcnow,
)

log = logging.getLogger(__name__)

EVENTS: Any = Event.__table__  # type: ignore[attr-defined]
SAMPLES: Any = SamplePacket.__table__  # type: ignore[attr-defined]
SENSORS: Any = Sensor.__table__  # type: ignore[attr-defined]

MIGRATIONS = PROJECT_ROOT / "db" / "migrations"
HEARTBEAT = 30.0  # seconds between sensor last_seen updates while no events are written
PG_MIGRATION_LOCK = 0x6E657469  # advisory lock id: two sensors starting at once upgrade in turn


# engine and schema ---------------------------------------------------------------------------


def make_engine(url: str, settings: StorageSettings | None = None) -> Engine:
    """The engine for ``url``; SQLite files get WAL, synchronous=NORMAL and a busy timeout."""
    settings = settings or StorageSettings()
    if url.startswith("sqlite"):
        path = url.split("///", 1)[1].split("?", 1)[0] if "///" in url else ""
        memory = path in ("", ":memory:")
        if not memory:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url,
            connect_args={"timeout": settings.busy_timeout_ms / 1000, "check_same_thread": False},
            # one shared connection, or the writer thread would see its own empty database
            **({"poolclass": StaticPool} if memory else {}),
        )

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute(f"PRAGMA busy_timeout={int(settings.busy_timeout_ms)}")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        return engine
    if not url.startswith("postgresql"):
        raise ValueError(f"unsupported database URL {url!r}: use sqlite:///FILE or postgresql+psycopg://...")
    connect_args = {
        # a lock held elsewhere fails the write after the same wait as SQLite's busy timeout
        "options": f"-c lock_timeout={int(settings.busy_timeout_ms)}",
        # a server that vanished without a reset is noticed in seconds, not hours
        "connect_timeout": 5,
        "keepalives": 1,
        "keepalives_idle": 5,
        "keepalives_interval": 2,
        "keepalives_count": 3,
    }
    return create_engine(url, pool_pre_ping=True, connect_args=connect_args)


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the schema to ``revision`` with the Alembic migrations in ``db/migrations``."""
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({PG_MIGRATION_LOCK})")
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)


def schema_revision(engine: Engine) -> str | None:
    """The Alembic revision the database is at (None: empty database)."""
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def open_database(url: str, settings: StorageSettings | None = None) -> Engine:
    """Make the engine and upgrade the schema to head: what the app does on start."""
    engine = make_engine(url, settings)
    upgrade(engine)
    return engine


# writer --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StoreStats:
    """What the writer has done; the UI shows ``pending`` and ``failures`` as they change."""

    pending: int  # events waiting in memory to be written
    written: int  # event rows written (inserts and updates)
    samples: int  # sample packets written
    failures: int  # write attempts that failed (each is retried)
    dropped: int  # events given up on: queue full, or still unwritten when close() timed out
    last_error: str  # the last failure, '' after a success
    last_write: datetime | None  # wall clock of the last successful transaction


class EventStore:
    """Writes :class:`~netids.detect.events.EventUpdate` batches from a background thread.

    >>> import tempfile
    >>> tmp = tempfile.TemporaryDirectory()
    >>> store = EventStore(open_database(f"sqlite:///{tmp.name}/doc.sqlite"), sensor="doc")
    >>> store.write([])
    >>> store.close().pending
    0
    >>> tmp.cleanup()
    """

    def __init__(
        self, engine: Engine, *, sensor: str = "local", settings: StorageSettings | None = None
    ) -> None:
        self.engine = engine
        self.sensor = _clean(sensor, 64)
        self.settings = settings or StorageSettings()
        self._cond = threading.Condition()
        self._pending: dict[str, EventUpdate] = {}
        self._samples: dict[str, list[Sample]] = {}
        self._accepted = 0  # updates accepted by write()
        self._done = 0  # every update accepted up to this count is committed (or dropped)
        self._urgent = False
        self._closing = False
        self._written = self._sample_count = self._failures = self._dropped = 0
        self._last_error = ""
        self._last_write: datetime | None = None
        self._inflight = 0
        self._close_deadline = float("inf")
        self._sensor_known = False
        self._last_retention = time.monotonic()
        self._last_beat = -float("inf")  # the sensor row is written at once, then kept fresh
        self._upsert = _event_upsert(engine.dialect.name)
        self._sqlite = engine.dialect.name == "sqlite"
        self._fast = _FastSQLiteUpsert(self._upsert) if self._sqlite else None
        self._insert_samples = _sample_insert(engine.dialect.name)
        self._thread = threading.Thread(target=self._run, name="netids-event-writer", daemon=True)
        self._thread.start()
        atexit.register(self.close)  # a caller that forgets close() still loses nothing

    def write(self, updates: Iterable[EventUpdate]) -> None:
        """Queue updates for the next transaction; never blocks on the database."""
        with self._cond:
            for u in updates:
                self._pending.pop(u.id, None)  # re-insert: the dict stays oldest-first
                self._pending[u.id] = u
                if u.new_samples:
                    self._samples.setdefault(u.id, []).extend(u.new_samples)
                self._accepted += 1
            self._bound()

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything written so far is committed; False if ``timeout`` ran out."""
        with self._cond:
            target = self._accepted
            self._urgent = True
            self._cond.notify_all()
            return self._cond.wait_for(lambda: self._done >= target, timeout=timeout)

    def close(self, timeout: float | None = None) -> StoreStats:
        """Write what is queued (retrying up to ``close_timeout``) and stop the thread."""
        atexit.unregister(self.close)
        with self._cond:
            self._closing = True
            self._close_deadline = time.monotonic() + (
                self.settings.close_timeout if timeout is None else timeout
            )
            self._cond.notify_all()
        self._thread.join()
        stats = self.stats
        if stats.pending:
            log.error("store closed, %d events unwritten: %s", stats.pending, stats.last_error)
        return stats

    @property
    def stats(self) -> StoreStats:
        with self._cond:
            return StoreStats(
                pending=len(self._pending) + self._inflight,
                written=self._written,
                samples=self._sample_count,
                failures=self._failures,
                dropped=self._dropped,
                last_error=self._last_error,
                last_write=self._last_write,
            )

    # the thread ------------------------------------------------------------------------------

    def _run(self) -> None:
        delay = self.settings.flush_interval
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._closing or self._urgent, timeout=delay)
                events, samples = self._pending, self._samples
                self._pending, self._samples = {}, {}
                self._inflight = len(events)
                upto = self._accepted
                closing = self._closing
            if not events and not samples:
                with self._cond:
                    self._done = max(self._done, upto)
                    self._urgent = False
                    self._cond.notify_all()
                if closing:
                    return
                self._heartbeat()
                self._maybe_retain()
                continue
            try:
                try:
                    self._commit(events, samples)
                except SQLAlchemyError:
                    raise
                except Exception as exc:  # the thread must not die: count it and retry
                    raise _Unexpected(f"{type(exc).__name__}: {exc}") from exc
            except (OperationalError, InterfaceError, _Unexpected) as exc:  # keep, retry
                if not isinstance(exc, SQLAlchemyError):
                    log.exception("event writer error")
                error = (str(exc).splitlines() or [type(exc).__name__])[0][:300]
                with self._cond:
                    self._failures += 1
                    self._last_error = error
                    self._pending = {**events, **self._pending}  # newer updates win
                    for eid, old in samples.items():
                        self._samples[eid] = old + self._samples.get(eid, [])
                    self._inflight = 0
                    self._bound()
                    if closing and time.monotonic() >= self._close_deadline:
                        self._dropped += len(self._pending)
                        return
                log.warning("event write failed (%d queued, retrying): %s", len(events), error)
                delay = min(max(delay * 2, self.settings.retry_min), self.settings.retry_max)
                time.sleep(min(delay, self.settings.retry_max))
                continue
            except SQLAlchemyError as exc:  # a row the database refuses: isolate it, keep the rest
                log.error("event write refused (%s); writing one event at a time", exc)
                written = self._salvage(events, samples)
            else:
                written = len(events)
            delay = self.settings.flush_interval
            with self._cond:
                self._written += written
                self._sample_count += sum(len(s) for s in samples.values())
                self._last_error = ""
                self._last_write = utcnow()
                self._inflight = 0
                self._done = max(self._done, upto)
                if not self._pending:
                    self._urgent = False
                self._cond.notify_all()
            self._maybe_retain()

    def _commit(self, events: dict[str, EventUpdate], samples: dict[str, list[Sample]]) -> None:
        now = utcnow()
        updates = list(events.values())
        sample_rows = [_sample_row(eid, s) for eid, ss in samples.items() for s in ss]
        step = self.settings.batch_rows
        with self.engine.begin() as conn:
            for i in range(0, len(updates), step):
                chunk = updates[i : i + step]
                if self._fast is not None:
                    self._fast.execute(conn, chunk, self.sensor, _sqlite_text(now))
                else:
                    conn.execute(self._upsert, [_event_row(u, self.sensor, now) for u in chunk])
            for i in range(0, len(sample_rows), step):
                conn.execute(self._insert_samples, sample_rows[i : i + step])
            if not self._sensor_known:
                conn.execute(_sensor_upsert(conn.dialect.name), [{
                    "name": self.sensor, "hostname": socket.gethostname(), "first_seen": now,
                    "last_seen": now,
                }])
            else:
                conn.execute(
                    update(Sensor).where(col(Sensor.name) == self.sensor).values(last_seen=now)
                )
        self._sensor_known = True

    def _salvage(self, events: dict[str, EventUpdate], samples: dict[str, list[Sample]]) -> int:
        """Write events one transaction each, dropping (and counting) those refused."""
        written = 0
        for eid, u in events.items():
            try:
                self._commit({eid: u}, {eid: samples.get(eid, [])})
                written += 1
            except SQLAlchemyError as exc:
                with self._cond:
                    self._dropped += 1
                    self._last_error = str(exc).splitlines()[0][:300]
                log.error("event %s dropped: %s", eid, exc)
        return written

    def _bound(self) -> None:
        """Drop the oldest queued events beyond ``max_pending`` (caller holds the lock)."""
        while len(self._pending) > self.settings.max_pending:
            eid = next(iter(self._pending))
            del self._pending[eid]
            self._samples.pop(eid, None)
            self._dropped += 1

    def _heartbeat(self) -> None:
        """Register the sensor and keep its ``last_seen`` fresh while it detects nothing."""
        if time.monotonic() - self._last_beat < HEARTBEAT:
            return
        self._last_beat = time.monotonic()
        try:
            self._commit({}, {})
        except SQLAlchemyError as exc:
            log.debug("sensor heartbeat failed: %s", exc)

    def _maybe_retain(self) -> None:
        s = self.settings
        if time.monotonic() - self._last_retention < s.retention_interval:
            return
        self._last_retention = time.monotonic()
        if s.retention_days is None and s.retention_rows is None:
            return
        try:
            with Session(self.engine) as session:
                apply_retention(
                    session=session,
                    max_age=None if s.retention_days is None else timedelta(days=s.retention_days),
                    max_rows=s.retention_rows,
                )
        except SQLAlchemyError as exc:
            log.warning("retention failed: %s", exc)


class _Unexpected(Exception):
    """Not a database error: a bug. Kept apart so the writer thread survives it."""


def _ts(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def _clean(text: str, size: int | None = None) -> str:
    """Text a database column takes: no NUL (PostgreSQL refuses it), at most ``size`` chars."""
    text = text.replace("\x00", "")
    return text if size is None else text[:size]


def _event_row(u: EventUpdate, sensor: str, now: datetime) -> dict[str, Any]:
    """Column values of an event (the SQLite fast path builds the same as a tuple)."""
    return {
        "id": u.id,
        "sensor": _clean(sensor, 64),
        "first_seen": _ts(u.first_seen),
        "last_seen": _ts(u.last_seen),
        "src": _clean(u.src, 64),
        "src_key": address_key(u.src),
        "src_port": u.src_port,
        "dst": _clean(u.dst, 64),
        "dst_key": address_key(u.dst),
        "dst_port": u.dst_port,
        "proto": _clean(u.proto, 16),
        "kind": _clean(u.kind, 64),
        "packets": u.packets,
        "score_max": u.score_max,
        "score_mean": u.score_mean,
        "severity": u.severity,
        "explanation": _clean(u.explanation),
        "threshold": u.threshold,
        "src_count": u.src_count,
        "dst_count": u.dst_count,
        "updated_at": now,
    }


def _sample_row(event_id: str, s: Sample) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "seq": s.seq,
        "ts": _ts(s.ts),
        "linktype": s.linktype,
        "wirelen": s.wirelen,
        "data": s.data,
        "score": s.score,
        "summary": _clean(s.summary),
    }


def _insert(dialect: str, table: Any) -> Any:
    if dialect == "sqlite":
        return sqlite.insert(table)
    if dialect == "postgresql":
        return postgresql.insert(table)
    raise ValueError(f"unsupported database {dialect!r}")


class _FastSQLiteUpsert:
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
        ts, key, clean = _sqlite_ts, address_key, _clean
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


def _sqlite_text(value: datetime) -> str:
    """What SQLAlchemy's SQLite DATETIME stores for an aware datetime: naive UTC text."""
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")


_SECONDS_TEXT: dict[float, str] = {}


def _sqlite_ts(seconds: float) -> str:
    """``_sqlite_text(datetime.fromtimestamp(seconds, UTC))``, rounded the same way, faster.

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


def _event_upsert(dialect: str) -> Any:
    table = EVENTS
    ins = _insert(dialect, table)
    keep = {"id", "sensor", "first_seen"}
    return ins.on_conflict_do_update(
        index_elements=["id"],
        set_={c.name: ins.excluded[c.name] for c in table.columns if c.name not in keep},
    )


def _sample_insert(dialect: str) -> Any:
    return _insert(dialect, SAMPLES).on_conflict_do_nothing(
        index_elements=["event_id", "seq"]
    )


def _sensor_upsert(dialect: str) -> Any:
    ins = _insert(dialect, SENSORS)
    return ins.on_conflict_do_update(
        index_elements=["name"],
        set_={"hostname": ins.excluded.hostname, "last_seen": ins.excluded.last_seen},
    )


# queries -------------------------------------------------------------------------------------


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
    """Delete events last seen longer than ``max_age`` ago and beyond the newest ``max_rows``,
    with their samples; return how many events went."""
    doomed: list[Any] = []
    if max_age is not None:
        cutoff = (now or utcnow()) - max_age
        doomed.append(select(col(Event.id)).where(col(Event.last_seen) < cutoff))
    if max_rows is not None:
        doomed.append(
            select(col(Event.id))
            .order_by(col(Event.last_seen).desc(), col(Event.id).desc())
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


# sensors, capture sessions, model versions ----------------------------------------------------


def list_sensors(*, session: Session) -> list[Sensor]:
    return list(session.exec(select(Sensor).order_by(col(Sensor.name))))


def start_capture_session(
    source: str, *, session: Session, sensor: str = "local", filter: str = ""
) -> CaptureSession:
    row = CaptureSession(sensor=sensor, source=source, filter=filter)
    session.add(row)
    session.commit()
    session.refresh(row)
    return row


def end_capture_session(
    session_id: int, *, session: Session, packets: int, drops: int
) -> CaptureSession | None:
    row = session.get(CaptureSession, session_id)
    if row is None:
        return None
    row.stopped_at, row.packets, row.drops = utcnow(), packets, drops
    session.add(row)
    session.commit()
    session.refresh(row)
    return row


def list_capture_sessions(*, session: Session, limit: int = 100) -> list[CaptureSession]:
    stmt = select(CaptureSession).order_by(col(CaptureSession.started_at).desc()).limit(limit)
    return list(session.exec(stmt))


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


