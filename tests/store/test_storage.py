"""The event store on a real SQLite file and a real PostgreSQL server (same tests for both)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import sqlite3
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlmodel import Session, SQLModel

from netids.config import PROJECT_ROOT, StorageSettings
from netids.detect.event_records import EventConfig, EventUpdate
from netids.detect.events import EventAggregator
from netids.store.engine import make_engine, open_database, schema_revision, upgrade
from netids.store.queries import (
    EventFilter,
    activate_model_version,
    active_model_version,
    add_model_version,
    apply_retention,
    count_events,
    event_samples,
    events_per_minute,
    get_event,
    list_sensors,
    query_events,
    top_sources,
    top_targets,
)
from netids.store.tables import TABLES, Event
from netids.store.writer import EventStore
from tests.conftest import reset_postgres
from tests.detect.test_events import latest, scored
from tests.support import make_packets

FAST = StorageSettings(
    flush_interval=0.05, busy_timeout_ms=200, retry_min=0.05, retry_max=0.2, close_timeout=5
)
T0 = 1_764_000_000.0  # 2025-11-24 16:00 UTC


# fixtures ------------------------------------------------------------------------------------


@pytest.fixture
def engine(storage_url: str) -> Iterator[sa.Engine]:
    engine = open_database(storage_url, FAST)
    yield engine
    engine.dispose()


def flood_and_scans(n_scans: int = 5) -> list[EventUpdate]:
    """One merged flood (1000 packets) and ``n_scans`` one-source scans, as the pipeline gives."""
    agg = EventAggregator(EventConfig(samples=3))
    flood = make_packets(1000, src=[f"10.7.{i // 200}.{i % 200}" for i in range(1000)],
                         dst="192.0.2.10", dport=443, ts=T0 + np.arange(1000) * 0.01)
    updates = agg.add(scored(flood, kinds="flood"))
    for i in range(n_scans):
        scan = make_packets(10, src=f"198.51.{100 + i // 250}.{i % 250 + 1}",
                            dst=f"10.{i // 250}.{i % 250}.1", proto=17,
                            ts=T0 + 60 * i + np.arange(10))
        updates += agg.add(scored(scan, scores=0.6 + 0.05 * i, kinds="port scan"))
    return list(latest(updates).values())


def stored(engine: sa.Engine, **kw: object) -> list[Event]:
    with Session(engine) as session:
        return query_events(session=session, filter=EventFilter(**kw), limit=None)  # type: ignore[arg-type]


# schema --------------------------------------------------------------------------------------


def test_fresh_database_is_at_head_and_matches_the_tables(engine: sa.Engine) -> None:
    assert schema_revision(engine) == "0006"
    ours = {t.__tablename__ for t in TABLES}
    with engine.connect() as conn:
        diffs = compare_metadata(MigrationContext.configure(conn), SQLModel.metadata)
    assert [d for d in diffs if ours & set(map(str, _tables_of(d)))] == []
    upgrade(engine)  # running it again on start is harmless
    assert schema_revision(engine) == "0006"


def _tables_of(diff: object) -> list[str]:
    items = diff if isinstance(diff, list) else [diff]
    names = []
    for item in items:
        for part in item if isinstance(item, tuple) else (item,):
            table = getattr(part, "table", None)
            name = getattr(part, "name", None) or getattr(table, "name", None)
            if name:
                names.append(name)
            if isinstance(part, str):
                names.append(part)
    return names


def test_upgrading_an_older_schema_keeps_its_history(storage_url: str) -> None:
    engine = make_engine(storage_url, FAST)
    upgrade(engine, "0001")
    assert schema_revision(engine) == "0001"
    old = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
    old_param = old.replace(tzinfo=None) if engine.dialect.name == "sqlite" else old
    with engine.begin() as conn:  # rows as the 0001 app wrote them (no src_count / dst_count)
        conn.execute(sa.text(
            "INSERT INTO events (id, sensor, first_seen, last_seen, src, src_key, src_port, dst,"
            " dst_key, dst_port, proto, kind, packets, score_max, score_mean, severity,"
            " explanation, threshold, updated_at) VALUES (:id, 'old-sensor', :t, :t,"
            " '192.0.2.1', '00000000000000000000ffffc0000201', NULL, '10.0.0.1',"
            " '00000000000000000000ffff0a000001', 22, 'TCP', 'brute force', 42, 0.93, 0.9,"
            " 'anomalous', '42 logins in 10 s', 0.5, :t)"
        ), {"id": "a" * 32, "t": old_param})
        conn.execute(sa.text(
            "INSERT INTO sample_packets (event_id, seq, ts, linktype, wirelen, data, score,"
            " summary) VALUES (:id, 0, :t, 1, 60, :data, 0.93, 'TCP 192.0.2.1 > 10.0.0.1')"
        ), {"id": "a" * 32, "t": old_param, "data": b"\x00\x01raw"})
    engine.dispose()

    engine = open_database(storage_url, FAST)  # what the new app does on start
    assert schema_revision(engine) == "0006"
    (event,) = stored(engine)
    assert (event.id, event.sensor, event.packets, event.kind, event.dst_port) == (
        "a" * 32, "old-sensor", 42, "brute force", 22,
    )
    assert event.first_seen == old and (event.src_count, event.dst_count) == (1, 1)
    with Session(engine) as session:
        assert [s.data for s in event_samples("a" * 32, session=session)] == [b"\x00\x01raw"]
    store = EventStore(engine, sensor="new", settings=FAST)
    store.write(flood_and_scans(2))
    store.close()
    assert len(stored(engine)) == 4
    engine.dispose()


# writing and reading -------------------------------------------------------------------------


def test_events_read_back_as_written(engine: sa.Engine) -> None:
    updates = flood_and_scans()
    store = EventStore(engine, sensor="lab-1", settings=FAST)
    store.write(updates)
    assert store.flush(timeout=10)
    stats = store.close()
    assert (stats.pending, stats.written, stats.failures, stats.dropped) == (0, 6, 0, 0)
    assert stats.samples == 3 * 6
    by_id = {e.id: e for e in stored(engine)}
    assert set(by_id) == {u.id for u in updates}
    for u in updates:
        e = by_id[u.id]
        assert e.sensor == "lab-1"
        assert e.first_seen == datetime.fromtimestamp(u.first_seen, UTC)
        assert e.last_seen.tzinfo is not None and e.last_seen.utcoffset() == timedelta(0)
        assert (e.src, e.dst, e.src_port, e.dst_port, e.proto, e.kind) == (
            u.src, u.dst, u.src_port, u.dst_port, u.proto, u.kind,
        )
        assert (e.packets, e.severity, e.explanation, e.src_count) == (
            u.packets, u.severity, u.explanation, u.src_count,
        )
        assert e.score_max == pytest.approx(u.score_max)
    flood = next(e for e in by_id.values() if e.kind == "flood")
    assert (flood.src, flood.packets) == ("", 1000)
    assert flood.src_count == pytest.approx(1000, rel=0.05)  # estimated past 64 (HyperLogLog)
    with Session(engine) as session:
        samples = event_samples(flood.id, session=session)
        assert [s.seq for s in samples] == [0, 1, 2]
        assert samples[0].data == (0).to_bytes(4, "big") * 15
        assert [s.name for s in list_sensors(session=session)] == ["lab-1"]


def test_updates_of_a_growing_event_rewrite_one_row(engine: sa.Engine) -> None:
    agg = EventAggregator()
    store = EventStore(engine, sensor="s", settings=FAST)
    for i in range(20):
        pk = make_packets(100, src="192.0.2.1", dst="10.0.0.1", ts=T0 + i + np.arange(100) * 0.001)
        store.write(agg.add(scored(pk)))
        if i % 5 == 0:
            store.flush(timeout=10)
    store.close()
    (event,) = stored(engine)
    assert event.packets == 2000 and event.last_seen.timestamp() == pytest.approx(T0 + 19.099)


def test_filters_sorting_and_pages(engine: sa.Engine) -> None:
    store = EventStore(engine, sensor="a", settings=FAST)
    store.write(flood_and_scans(5))
    store.close()
    other = EventStore(engine, sensor="b", settings=FAST)
    pk = make_packets(3, src="2001:db8::7", dst="2001:db8:1::1", proto=58, ts=T0 + np.arange(3.0))
    other.write(EventAggregator().add(scored(pk, scores=0.3, threshold=0.2, kinds="odd icmp")))
    other.close()
    every = stored(engine)
    assert len(every) == 7

    def ids(**kw: object) -> set[str]:
        return {e.id for e in stored(engine, **kw)}

    assert len(ids(sensor="b")) == 1 and len(ids(sensor="a")) == 6
    assert len(ids(src="198.51.100.0/24")) == 5 and len(ids(src="198.51.100.3")) == 1
    assert len(ids(dst="10.0.0.0/16")) == 5 and len(ids(dst="192.0.2.10")) == 1
    assert ids(src="2001:db8::/32") == ids(sensor="b") == ids(dst="2001:db8:1::/48")
    assert len(ids(src="0.0.0.0/0")) == 5  # IPv4 only; the merged flood has no one source
    assert len(ids(proto="udp")) == 5 and len(ids(proto="ICMPv6")) == 1
    assert len(ids(kind="port scan")) == 5 and len(ids(kind="flood")) == 1
    assert len(ids(min_score=0.7)) == 3  # flood 0.9995, scans 0.7 and 0.8
    assert len(ids(min_severity="anomalous")) == 1 and len(ids(min_severity="suspicious")) == 6
    assert len(ids(min_severity="normal")) == 7
    assert len(ids(since=datetime.fromtimestamp(T0 + 150, UTC))) == 2  # scans 3 and 4
    assert len(ids(until=datetime.fromtimestamp(T0 + 30, UTC))) == 3
    assert len(ids(text="SCORE 0.8")) == 1
    assert len(ids(sensor="a", proto="UDP", min_score=0.7)) == 2

    with Session(engine) as session:
        assert count_events(session=session, filter=EventFilter(kind="port scan")) == 5
        for col in Event.__table__.columns.keys():  # noqa: SIM118 - names, not columns
            for desc in (False, True):
                got = query_events(session=session, sort=col, descending=desc, limit=None)
                keys = [getattr(e, col) for e in got]
                if col != "src_port" and col != "dst_port":
                    assert keys == sorted(keys, reverse=desc), col
        pages = [query_events(session=session, sort="kind", offset=o, limit=3) for o in (0, 3, 6)]
        assert [len(p) for p in pages] == [3, 3, 1]
        assert len({e.id for p in pages for e in p}) == 7
        assert get_event(pages[0][0].id, session=session) is not None
        with pytest.raises(ValueError, match="cannot sort"):
            query_events(session=session, sort="packets; DROP TABLE events")


def test_chart_counts(engine: sa.Engine) -> None:
    store = EventStore(engine, sensor="a", settings=FAST)
    store.write(flood_and_scans(5))
    store.close()
    with Session(engine) as session:
        minutes = events_per_minute(session=session)
        start = datetime.fromtimestamp(T0, UTC)
        assert minutes == [
            (start + timedelta(minutes=i), 2 if i == 0 else 1, 1010 if i == 0 else 10)
            for i in range(5)
        ]
        assert top_targets(session=session, limit=1) == [("192.0.2.10", 1, 1000)]
        assert top_sources(session=session)[0] == ("", 1, 1000)
        assert len(top_sources(session=session, filter=EventFilter(kind="port scan"))) == 5


HOSTILE = [
    "'; DROP TABLE events; --",
    "\" OR 1=1 --",
    "' OR ''='",
    "x' UNION SELECT id FROM events --",
    "%",
    "_",
    "\\",
    "Robert'); DELETE FROM sample_packets;--",
]


@pytest.mark.parametrize("hostile", HOSTILE)
def test_hostile_filter_strings_are_parameters(engine: sa.Engine, hostile: str) -> None:
    store = EventStore(engine, sensor="a", settings=FAST)
    pk = make_packets(3, src="192.0.2.1", dst="10.0.0.1", ts=T0 + np.arange(3))
    store.write(flood_and_scans(2) + EventAggregator().add(scored(pk, kinds=hostile)))
    store.close()
    assert len(stored(engine)) == 4
    for field in ("sensor", "proto"):
        assert stored(engine, **{field: hostile}) == []
    (exact,) = stored(engine, kind=hostile)  # the hostile kind is data, found exactly
    assert exact.kind == hostile and exact.packets == 3
    assert stored(engine, text=hostile) == []  # LIKE wildcards are escaped too
    for field in ("src", "dst"):
        with pytest.raises(ValueError, match="not an address or CIDR"):
            stored(engine, **{field: hostile})
    with Session(engine) as session:
        assert get_event(hostile, session=session) is None
        with pytest.raises(ValueError):
            query_events(session=session, sort=hostile)
        assert event_samples(hostile, session=session) == []
    assert len(stored(engine)) == 4
    assert sa.inspect(engine).has_table("events") and sa.inspect(engine).has_table("sample_packets")


def test_nul_characters_are_stripped_on_write_and_refused_in_filters(engine: sa.Engine) -> None:
    store = EventStore(engine, sensor="a\x00b", settings=FAST)
    pk = make_packets(3, src="192.0.2.1", dst="10.0.0.1", ts=T0 + np.arange(3))
    store.write(EventAggregator().add(scored(pk, kinds="bad\x00kind")))
    stats = store.close()
    assert (stats.pending, stats.dropped, stats.failures) == (0, 0, 0)
    (event,) = stored(engine, kind="badkind")
    assert event.sensor == "ab"
    for field in ("sensor", "kind", "text", "src"):
        with pytest.raises(ValueError, match="NUL"):
            stored(engine, **{field: "x\x00"})


def test_retention_goes_by_stored_time_not_packet_time(engine: sa.Engine) -> None:
    events = flood_and_scans(5)  # a recording from long ago: packets at T0 + seconds
    store = EventStore(engine, sensor="a", settings=FAST)
    store.write(events[-2:])  # scans 3 and 4, the latest packets, stored first
    assert store.flush(timeout=10)
    time.sleep(0.05)
    store.write(events[:-2])  # the flood and scans 0-2, earlier packets, stored a moment later
    store.close()
    assert datetime.now(UTC) - datetime.fromtimestamp(T0 + 249, UTC) > timedelta(days=30)
    with Session(engine) as session:
        # a day's retention keeps events stored now, however old their packets are
        assert apply_retention(session=session, max_age=timedelta(days=1)) == 0
        assert count_events(session=session) == 6
        # the row limit keeps the events stored last, not those with the latest packets
        assert apply_retention(session=session, max_rows=4) == 2
        left = query_events(session=session, sort="last_seen")
        assert [round(e.last_seen.timestamp() - T0) for e in left] == [129, 69, 10, 9]
        n_samples = session.exec(sa.select(sa.func.count()).select_from(sa.table("sample_packets")))
        assert n_samples.one()[0] == 12  # the deleted events' samples went with them
        later = datetime.now(UTC) + timedelta(days=2)
        assert apply_retention(session=session, max_age=timedelta(days=1), now=later) == 4
        assert count_events(session=session) == 0


def test_a_new_sqlite_file_and_its_folder_are_private(tmp_path: Path) -> None:
    path = tmp_path / "new" / "netids.sqlite"
    engine = open_database(f"sqlite:///{path}", FAST)
    store = EventStore(engine, sensor="a", settings=FAST)
    store.write(flood_and_scans(1))
    assert store.flush(timeout=10)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in path.parent.iterdir()}
    assert modes == {"netids.sqlite": 0o600, "netids.sqlite-wal": 0o600,
                     "netids.sqlite-shm": 0o600}
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    store.close()
    engine.dispose()


def test_the_writer_applies_retention_as_it_goes(engine: sa.Engine) -> None:
    store = EventStore(engine, sensor="a", settings=StorageSettings(
        flush_interval=0.05, retention_rows=3, retention_days=None, retention_interval=0.0,
    ))
    store.write(flood_and_scans(9))
    assert store.flush(timeout=10)
    store.write(flood_and_scans(1))  # the next round trims to the newest three
    assert store.flush(timeout=10)
    assert wait_for(lambda: len(stored(engine)) == 3)
    store.close()


def test_a_quiet_sensor_is_registered_all_the_same(engine: sa.Engine) -> None:
    store = EventStore(engine, sensor="quiet", settings=FAST)

    def names() -> list[str]:
        with Session(engine) as session:
            return [s.name for s in list_sensors(session=session)]

    assert wait_for(lambda: names() == ["quiet"])
    store.close()


def test_in_memory_sqlite_is_one_database_for_every_thread() -> None:
    engine = open_database("sqlite://", FAST)
    store = EventStore(engine, sensor="demo", settings=FAST)
    store.write(flood_and_scans(3))
    assert store.close().written == 4
    assert len(stored(engine)) == 4


# failures ------------------------------------------------------------------------------------


class WriteLock:
    """Another connection holding the write lock on the events table until released."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        if engine.dialect.name == "sqlite":
            self.conn = sqlite3.connect(engine.url.database, isolation_level=None)
            self.conn.execute("BEGIN IMMEDIATE")
        else:
            self.conn = engine.raw_connection()
            self.conn.cursor().execute("LOCK TABLE events IN ACCESS EXCLUSIVE MODE")

    def release(self) -> None:
        if self.engine.dialect.name == "sqlite":
            self.conn.execute("ROLLBACK")
        else:
            self.conn.rollback()
        self.conn.close()


def wait_for(predicate, timeout: float = 10.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def test_locked_database_queues_in_memory_and_lands_when_released(engine: sa.Engine) -> None:
    store = EventStore(engine, sensor="a", settings=FAST)
    store.write(flood_and_scans(1))
    assert store.flush(timeout=10)
    lock = WriteLock(engine)
    try:
        updates = flood_and_scans(20)
        store.write(updates[:10])
        assert wait_for(lambda: store.stats.failures >= 2)
        store.write(updates[10:])
        assert wait_for(lambda: store.stats.pending == 21)
        stats = store.stats
        assert stats.failures >= 2 and stats.last_error and stats.dropped == 0
        assert not store.flush(timeout=0.3)
    finally:
        lock.release()
    assert store.flush(timeout=10)
    stats = store.close()
    assert (stats.pending, stats.dropped, stats.last_error) == (0, 0, "")
    assert len(stored(engine)) == 2 + 21


class TcpProxy:
    """A TCP forwarder to the database server that can be switched off: the server 'goes away'."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.port = 0
        self.conns: list[socket.socket] = []
        self.start()

    def start(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", self.port), reuse_port=True)
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, args=(self.listener,), daemon=True).start()

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes the accept() below
        self.listener.close()
        for conn in self.conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()
        self.conns.clear()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.target)
            self.conns += [client, server]
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                dst.sendall(data)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)


def test_postgres_going_away_queues_events_until_it_is_back(pg_url: str) -> None:
    reset_postgres(pg_url)
    url = sa.engine.make_url(pg_url)
    proxy = TcpProxy(url.host or "127.0.0.1", url.port or 5432)
    engine = open_database(url.set(port=proxy.port).render_as_string(hide_password=False), FAST)
    store = EventStore(engine, sensor="a", settings=FAST)
    try:
        store.write(flood_and_scans(1))
        assert store.flush(timeout=10)
        proxy.stop()  # the server is away: connections cut, new ones refused
        store.write(flood_and_scans(5))
        assert wait_for(lambda: store.stats.failures >= 2)
        assert store.stats.pending == 6 and store.stats.last_error
        proxy.start()
        assert store.flush(timeout=20)
        stats = store.close()
        assert (stats.pending, stats.dropped, stats.last_error) == (0, 0, "")
    finally:
        proxy.stop()
    engine.dispose()
    assert len(stored(make_engine(pg_url))) == 2 + 6


def test_memory_queue_is_bounded_and_counts_what_it_drops(engine: sa.Engine) -> None:
    store = EventStore(engine, sensor="a", settings=StorageSettings(
        flush_interval=0.05, busy_timeout_ms=100, retry_min=0.05, retry_max=0.1, max_pending=10,
        close_timeout=5,
    ))
    lock = WriteLock(engine)
    try:
        store.write(flood_and_scans(24))
        assert wait_for(lambda: store.stats.failures >= 1)
        assert store.stats.pending == 10 and store.stats.dropped == 15
    finally:
        lock.release()
    stats = store.close()
    assert (stats.pending, stats.dropped) == (0, 15)
    assert len(stored(engine)) == 10  # the newest ten


def test_close_writes_everything_already_detected(engine: sa.Engine) -> None:
    store = EventStore(engine, sensor="a", settings=StorageSettings(flush_interval=30))
    updates = flood_and_scans(2000)
    store.write(updates)
    stats = store.close()  # long before the next periodic write
    assert (stats.pending, stats.written) == (0, len(updates))
    assert len(stored(engine)) == len(updates)


async def test_async_pipeline_never_waits_on_the_database(engine: sa.Engine) -> None:
    store = EventStore(engine, sensor="a", settings=FAST)
    lock = await asyncio.to_thread(WriteLock, engine)
    batches = [flood_and_scans(3) for _ in range(10)]
    try:
        slowest = 0.0
        for updates in batches:  # from the event loop, while the database is locked
            t = time.perf_counter()
            store.write(updates)
            slowest = max(slowest, time.perf_counter() - t)
            await asyncio.sleep(0.01)
        assert slowest < 0.05 and store.stats.pending == 40
    finally:
        await asyncio.to_thread(lock.release)
    assert await asyncio.to_thread(store.flush, 10)
    await asyncio.to_thread(store.close)
    assert len(stored(engine)) == 40


# processes -----------------------------------------------------------------------------------

WRITER = r"""
import json, sys, time
import numpy as np
from netids.config import StorageSettings
from netids.detect.events import EventAggregator
from netids.detect.frames import FrameBatch
from netids.detect.scored import ScoredBatch
from netids.store.engine import open_database
from netids.store.writer import EventStore
from tests.support import make_packets

url, sensor, count, delay = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
store = EventStore(open_database(url), sensor=sensor, settings=StorageSettings())
agg = EventAggregator()
print("ready", flush=True)
for i in range(count):
    now = time.time()
    src = [f"172.16.{i // 250 % 250}.{i % 250}"] * 5 + ["192.0.2.1"] * 100
    dst = [f"10.{i // 250 % 250}.{i % 250}.1"] * 5 + ["10.255.0.1"] * 100
    pk = make_packets(105, src=src, dst=dst, ts=now + np.arange(105) * 1e-4)
    scores = np.full(105, 0.9, np.float32)
    kinds = ["scan"] * 5 + ["flood"] * 100
    frames = FrameBatch.from_frames([b"\x00" * 60] * 105, pk.ts)
    batch = ScoredBatch(frames, pk, np.zeros((105, 1), np.float32), scores, 0.5, scores >= 0.5,
                        kinds, ["why"] * 105)
    updates = agg.add(batch)
    store.write(updates)
    print(json.dumps({"t": time.time(), "events": [[u.id, u.packets] for u in updates]}),
          flush=True)
    time.sleep(delay)
stats = store.close()
print(json.dumps({"done": stats.written, "pending": stats.pending}), flush=True)
"""


def writer(url: str, sensor: str, count: int, delay: float) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
    return subprocess.Popen(
        [sys.executable, "-c", WRITER, url, sensor, str(count), str(delay)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=PROJECT_ROOT,
    )


@pytest.mark.slow
def test_sigkill_loses_at_most_the_last_second(storage_url: str) -> None:
    open_database(storage_url).dispose()  # schema first, so the child starts writing at once
    proc = writer(storage_url, "killed", 100_000, 0.01)
    lines: list[dict] = []
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(json.loads(line))

    reader = threading.Thread(target=read)
    reader.start()
    time.sleep(4.2)  # not a multiple of a slow flush interval, so one would show
    killed_at = time.time()
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    reader.join()
    assert proc.returncode == -signal.SIGKILL
    detected: dict[str, int] = {}  # event id -> packets seen more than a second before the kill
    for line in lines:
        if line["t"] < killed_at - 1.0:
            for eid, packets in line["events"]:
                detected[eid] = packets
    assert len(detected) > 50
    engine = make_engine(storage_url)
    with Session(engine) as session:
        rows = {e.id: e for e in query_events(session=session, limit=None)}
    engine.dispose()
    missing = [eid for eid in detected if eid not in rows]
    short = [eid for eid, n in detected.items() if eid in rows and rows[eid].packets < n]
    assert missing == [] and short == []
    assert all(e.sensor == "killed" for e in rows.values())


@pytest.mark.slow
def test_two_sensor_processes_writing_at_once_lose_nothing(storage_url: str) -> None:
    open_database(storage_url).dispose()
    procs = {name: writer(storage_url, name, 300, 0.002) for name in ("sensor-a", "sensor-b")}
    reported: dict[str, dict[str, int]] = {}
    for name, proc in procs.items():
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        lines = [json.loads(line) for line in out.splitlines()[1:]]
        assert lines[-1]["pending"] == 0
        reported[name] = {eid: n for line in lines[:-1] for eid, n in line["events"]}
    engine = make_engine(storage_url)
    with Session(engine) as session:
        for name, events in reported.items():
            rows = query_events(session=session, filter=EventFilter(sensor=name), limit=None)
            assert {e.id: e.packets for e in rows} == events
            assert len(rows) == 301  # 300 scans and one flood of 30,000 packets
            assert sum(e.packets for e in rows) == 300 * 105
        assert [s.name for s in list_sensors(session=session)] == ["sensor-a", "sensor-b"]
    engine.dispose()


def test_a_process_that_forgets_close_still_writes_everything(storage_url: str) -> None:
    code = (
        "import sys\n"
        "from netids.config import StorageSettings\n"
        "from netids.store.engine import open_database\n"
        "from netids.store.writer import EventStore\n"
        "from tests.store.test_storage import flood_and_scans\n"
        "store = EventStore(open_database(sys.argv[1]), sensor='forgetful',\n"
        "                   settings=StorageSettings(flush_interval=60))\n"
        "store.write(flood_and_scans(500))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
    subprocess.run([sys.executable, "-c", code, storage_url], check=True, env=env,
                   cwd=PROJECT_ROOT, timeout=60)
    engine = make_engine(storage_url)
    assert len(stored(engine, sensor="forgetful")) == 501
    engine.dispose()


# the other tables ----------------------------------------------------------------------------


def test_model_versions(engine: sa.Engine) -> None:
    with Session(engine) as session:
        add_model_version("default", "models/default.pt", session=session,
                          details={"auc": 0.97, "packets": 265_000}, activate=True)
        add_model_version("retrained", "models/retrained.pt", session=session)
        active = active_model_version(session=session)
        assert active is not None and active.name == "default" and active.details["auc"] == 0.97
        activate_model_version("retrained", session=session)
        active = active_model_version(session=session)
        assert active is not None and active.name == "retrained"
        n_active = session.exec(sa.text("SELECT count(*) FROM model_versions WHERE active"))
        assert n_active.one()[0] == 1
        with pytest.raises(ValueError):
            activate_model_version("'; DROP TABLE model_versions; --", session=session)
