"""The batched event writer: :class:`EventStore` owns a thread that writes events and
connection records.

:meth:`EventStore.write` only merges updates into a bounded in-memory queue and returns at
once, so the pipeline (sync or asyncio) never waits on the database. The thread writes
everything queued in one transaction at least every ``flush_interval`` seconds; when the
database is locked or away the queue is kept and retried with backoff, and
:attr:`EventStore.stats` shows it. Upserts by event id make every write idempotent, so a
retried batch never duplicates anything; connection records are upserted by uid likewise, in
the same transaction as the events, from a queue of their own (bounded by
``max_pending_connections``, newest snapshot per uid).
"""

from __future__ import annotations

import atexit
import logging
import socket
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Engine, update
from sqlalchemy.exc import InterfaceError, OperationalError, SQLAlchemyError
from sqlmodel import Session, col

from netids.config import StorageSettings
from netids.detect.conn_records import ConnRecord
from netids.detect.event_records import EventUpdate, Sample
from netids.store.conn_queries import apply_conn_retention
from netids.store.conn_rows import conn_row, conn_upsert
from netids.store.queries import apply_retention
from netids.store.rows import (
    FastSQLiteUpsert,
    clean,
    event_row,
    event_upsert,
    sample_insert,
    sample_row,
    sensor_upsert,
    sqlite_text,
)
from netids.store.tables import Sensor, utcnow

log = logging.getLogger(__name__)

HEARTBEAT = 30.0  # seconds between sensor last_seen updates while no events are written


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
    connections: int = 0  # connection rows written (inserts and updates)
    conn_pending: int = 0  # connection records waiting in memory
    conn_dropped: int = 0  # connection records given up on (queue full, refused, unwritten)


class EventStore:
    """Writes :class:`~netids.detect.events.EventUpdate` batches from a background thread.

    >>> import tempfile
    >>> from netids.store.engine import open_database
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
        self.sensor = clean(sensor, 64)
        self.settings = settings or StorageSettings()
        self._cond = threading.Condition()
        self._pending: dict[str, EventUpdate] = {}
        self._samples: dict[str, list[Sample]] = {}
        self._conns: dict[str, ConnRecord] = {}  # by uid: a newer snapshot replaces an older
        self._conn_written = self._conn_dropped = self._conn_inflight = 0
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
        self._upsert = event_upsert(engine.dialect.name)
        self._sqlite = engine.dialect.name == "sqlite"
        self._fast = FastSQLiteUpsert(self._upsert) if self._sqlite else None
        self._insert_samples = sample_insert(engine.dialect.name)
        self._upsert_conns = conn_upsert(engine.dialect.name)
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

    def write_connections(self, records: Iterable[ConnRecord]) -> None:
        """Queue connection records for the next transaction; never blocks on the database."""
        with self._cond:
            for r in records:
                self._conns.pop(r.uid, None)  # re-insert: the dict stays oldest-first
                self._conns[r.uid] = r
                self._accepted += 1
            while len(self._conns) > self.settings.max_pending_connections:
                del self._conns[next(iter(self._conns))]
                self._conn_dropped += 1

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
                connections=self._conn_written,
                conn_pending=len(self._conns) + self._conn_inflight,
                conn_dropped=self._conn_dropped,
            )

    # the thread ------------------------------------------------------------------------------

    def _run(self) -> None:
        delay = self.settings.flush_interval
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._closing or self._urgent, timeout=delay)
                events, samples, conns = self._pending, self._samples, self._conns
                self._pending, self._samples, self._conns = {}, {}, {}
                self._inflight, self._conn_inflight = len(events), len(conns)
                upto = self._accepted
                closing = self._closing
            if not events and not samples and not conns:
                if self._idle(upto, closing):
                    return
                continue
            try:
                written = self._write_or_salvage(events, samples, conns)
            except (OperationalError, InterfaceError, _Unexpected) as exc:  # keep, retry
                if self._requeue(exc, events, samples, conns, closing):
                    return
                delay = min(max(delay * 2, self.settings.retry_min), self.settings.retry_max)
                time.sleep(min(delay, self.settings.retry_max))
                continue
            delay = self.settings.flush_interval
            self._committed(written, samples, upto)

    def _idle(self, upto: int, closing: bool) -> bool:
        """Nothing queued: mark what was accepted as done, keep the sensor row fresh and apply
        retention; True when the writer should stop."""
        with self._cond:
            self._done = max(self._done, upto)
            self._urgent = False
            self._cond.notify_all()
        if closing:
            return True
        self._heartbeat()
        self._maybe_retain()
        return False

    def _write_or_salvage(
        self, events: dict[str, EventUpdate], samples: dict[str, list[Sample]],
        conns: dict[str, ConnRecord]
    ) -> int:
        """Commit one batch; when the database refuses a row, write the rest one by one.
        Raises what should be retried: a lost or locked database, or a bug (``_Unexpected``)."""
        try:
            self._commit(events, samples, conns)
        except (OperationalError, InterfaceError):
            raise
        except SQLAlchemyError as exc:  # a row the database refuses: isolate it, keep the rest
            log.error("event write refused (%s); writing one event at a time", exc)
            self._salvage_conns(conns)
            return self._salvage(events, samples)
        except Exception as exc:  # the thread must not die: count it and retry
            raise _Unexpected(f"{type(exc).__name__}: {exc}") from exc
        return len(events)

    def _requeue(self, exc: Exception, events: dict[str, EventUpdate],
                 samples: dict[str, list[Sample]], conns: dict[str, ConnRecord],
                 closing: bool) -> bool:
        """Put a failed batch back in front of newer updates; True when closing has run out of
        time (what is left is counted as dropped)."""
        if not isinstance(exc, SQLAlchemyError):
            log.exception("event writer error")
        error = (str(exc).splitlines() or [type(exc).__name__])[0][:300]
        with self._cond:
            self._failures += 1
            self._last_error = error
            self._pending = {**events, **self._pending}  # newer updates win
            for eid, old in samples.items():
                self._samples[eid] = old + self._samples.get(eid, [])
            self._conns = {**conns, **self._conns}
            self._inflight = self._conn_inflight = 0
            self._bound()
            if closing and time.monotonic() >= self._close_deadline:
                self._dropped += len(self._pending)
                self._conn_dropped += len(self._conns)
                return True
        log.warning("event write failed (%d queued, retrying): %s", len(events), error)
        return False

    def _committed(self, written: int, samples: dict[str, list[Sample]], upto: int) -> None:
        with self._cond:
            self._written += written
            self._conn_written += self._conn_inflight
            self._sample_count += sum(len(s) for s in samples.values())
            self._last_error = ""
            self._last_write = utcnow()
            self._inflight = self._conn_inflight = 0
            self._done = max(self._done, upto)
            if not self._pending:
                self._urgent = False
            self._cond.notify_all()
        self._maybe_retain()

    def _commit(self, events: dict[str, EventUpdate], samples: dict[str, list[Sample]],
                conns: dict[str, ConnRecord] | None = None) -> None:
        now = utcnow()
        conn_rows = [conn_row(r, self.sensor, now) for r in (conns or {}).values()]
        updates = list(events.values())
        sample_rows = [sample_row(eid, s) for eid, ss in samples.items() for s in ss]
        step = self.settings.batch_rows
        with self.engine.begin() as conn:
            for i in range(0, len(updates), step):
                chunk = updates[i : i + step]
                if self._fast is not None:
                    self._fast.execute(conn, chunk, self.sensor, sqlite_text(now))
                else:
                    conn.execute(self._upsert, [event_row(u, self.sensor, now) for u in chunk])
            for i in range(0, len(sample_rows), step):
                conn.execute(self._insert_samples, sample_rows[i : i + step])
            for i in range(0, len(conn_rows), step):
                conn.execute(self._upsert_conns, conn_rows[i : i + step])
            if not self._sensor_known:
                conn.execute(sensor_upsert(conn.dialect.name), [{
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

    def _salvage_conns(self, conns: dict[str, ConnRecord]) -> None:
        """Write connection records one transaction each, counting those refused as dropped
        (they leave the in-flight count, which ``_committed`` adds to the written)."""
        for uid, r in conns.items():
            try:
                self._commit({}, {}, {uid: r})
            except SQLAlchemyError as exc:
                with self._cond:
                    self._conn_dropped += 1
                    self._conn_inflight -= 1
                log.error("connection %s dropped: %s", uid, exc)

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
        try:
            with Session(self.engine) as session:
                if s.retention_days is not None or s.retention_rows is not None:
                    apply_retention(
                        session=session, max_rows=s.retention_rows,
                        max_age=None if s.retention_days is None
                        else timedelta(days=s.retention_days),
                    )
                if s.conn_retention_days is not None:
                    apply_conn_retention(session=session,
                                         max_age=timedelta(days=s.conn_retention_days))
        except SQLAlchemyError as exc:
            log.warning("retention failed: %s", exc)


class _Unexpected(Exception):
    """Not a database error: a bug. Kept apart so the writer thread survives it."""
