"""Connection records in the database (real SQLite file and real PostgreSQL): ``score --db``
on a real capture stores every connection, events find the connections behind them, snapshots
rewrite their row, and retention goes by stored time."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa
from sqlmodel import Session, col, select, update

from netids.config import PROJECT_ROOT, StorageSettings
from netids.detect.connections import ConnTracker
from netids.store.conn_queries import (
    ConnFilter,
    apply_conn_retention,
    count_connections,
    query_connections,
)
from netids.store.engine import open_database
from netids.store.queries import query_events
from netids.store.tables import Connection, utcnow
from netids.store.writer import EventStore
from tests.support import make_packets

APP = str(PROJECT_ROOT / "app.py")
SAMPLE = PROJECT_ROOT / "netids" / "samples" / "lab_sample.pcap"
FAST = StorageSettings(flush_interval=0.05, busy_timeout_ms=200, retry_min=0.05,
                       retry_max=0.2, close_timeout=5)


@pytest.fixture
def engine(storage_url: str) -> Iterator[sa.Engine]:
    engine = open_database(storage_url, FAST)
    yield engine
    engine.dispose()


@pytest.fixture(scope="module")
def scored_sample(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bundled lab capture scored once with ``--conn`` and ``--db`` on a SQLite file."""
    folder = tmp_path_factory.mktemp("scored")
    done = subprocess.run(
        [sys.executable, APP, "score", str(SAMPLE), "--out", str(folder / "s.csv"),
         "--conn", str(folder / "conn.log"), "--db", f"sqlite:///{folder}/netids.sqlite",
         "--workers", "0"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "8,705 connection records stored in the database" in done.stderr
    return folder


def conn_log(path: Path) -> dict[str, list[str]]:
    """The lines of a conn.log by uid (fields as text)."""
    lines = [line.split("\t") for line in path.read_text().splitlines()
             if not line.startswith("#")]
    return {fields[1]: fields for fields in lines}


def test_score_db_stores_the_same_connections_as_the_conn_log(scored_sample: Path) -> None:
    logged = conn_log(scored_sample / "conn.log")
    engine = open_database(f"sqlite:///{scored_sample}/netids.sqlite")
    with Session(engine) as session:
        rows = {c.uid: c for c in session.exec(select(Connection))}
    assert set(rows) == set(logged) and len(rows) == 8705
    for uid, fields in logged.items():
        c = rows[uid]
        assert (c.orig_h, str(c.orig_p), c.resp_h, str(c.resp_p), c.proto, c.conn_state,
                str(c.orig_pkts), str(c.resp_pkts), c.history or "-") == (
            fields[2], fields[3], fields[4], fields[5], fields[6], fields[11], fields[14],
            fields[16], fields[13])
        assert abs(c.ts.timestamp() - float(fields[0])) < 1e-5
    states = {c.conn_state for c in rows.values()}
    assert {"SF", "REJ", "RSTO"} <= states
    engine.dispose()


def test_an_event_lists_the_connections_behind_it(scored_sample: Path) -> None:
    engine = open_database(f"sqlite:///{scored_sample}/netids.sqlite")
    with Session(engine) as session:
        events = query_events(session=session, limit=None)
        flood = max((e for e in events if e.kind == "flood" and e.proto == "TCP"),
                    key=lambda e: e.packets)
        arp = next(e for e in events if e.proto == "ARP")
        behind = ConnFilter(event=flood.id)
        total = count_connections(session=session, filter=behind)
        page = query_connections(session=session, filter=behind, limit=50)
        assert count_connections(session=session, filter=ConnFilter(event=arp.id)) == 0
        assert count_connections(session=session, filter=ConnFilter(event="no such")) == 0
        capped = count_connections(session=session, filter=behind, cap=100)
    assert total > 1000 and len(page) == 50
    assert capped == 101  # a count stops one past its cap: "100+", never a flood's every row
    for c in page:  # the flood's endpoints, its port, inside its time window
        assert {c.orig_h, c.resp_h} == {flood.src, flood.dst}
        assert flood.dst_port in (c.orig_p, c.resp_p)
        assert c.ts <= flood.last_seen + timedelta(seconds=1)
        assert c.last_ts >= flood.first_seen - timedelta(seconds=1)
    engine.dispose()


def test_filters_and_sorting(scored_sample: Path) -> None:
    engine = open_database(f"sqlite:///{scored_sample}/netids.sqlite")
    with Session(engine) as session:
        rej = query_connections(session=session, filter=ConnFilter(state="rej"), limit=5000)
        assert rej and all(c.conn_state == "REJ" for c in rej)
        lab_udp = ConnFilter(proto="UDP", host="10.77.0.0/24")
        udp = query_connections(session=session, filter=lab_udp, sort="orig_pkts",
                                descending=True, limit=20)
        assert udp and all(c.proto == "udp" for c in udp)
        assert [c.orig_pkts for c in udp] == sorted((c.orig_pkts for c in udp), reverse=True)
        one = rej[0]
        assert [c.uid for c in query_connections(
            session=session, filter=ConnFilter(text=one.uid.lower()))] == [one.uid]
        assert count_connections(session=session, filter=ConnFilter(
            src=one.orig_h, dst=one.resp_h, until=one.ts, since=one.last_ts)) >= 1
        with pytest.raises(ValueError, match="not an address or CIDR"):
            count_connections(session=session, filter=ConnFilter(host="10.0.0.300"))
        with pytest.raises(ValueError, match="cannot sort by"):
            query_connections(session=session, sort="uid; DROP TABLE connections")
    engine.dispose()


def long_udp_records() -> list[list]:
    """A UDP conversation of 150 s: snapshots at 60 s and 120 s, then the final record."""
    tracker = ConnTracker()
    out = []
    for start in (0, 70, 130):
        ts = 1_764_000_000.0 + start + np.arange(10) * 2.0
        out.append(tracker.update(make_packets(10, src="10.1.0.5", dst="10.1.0.9", sport=5000,
                                               dport=9999, proto=17, ts=ts)))
    out.append(tracker.flush())
    return out


def test_snapshots_rewrite_the_row_of_their_connection(engine: sa.Engine) -> None:
    batches = long_udp_records()
    snapshots = [r for batch in batches for r in batch if r.in_progress]
    assert len(snapshots) == 2 and len({r.uid for r in snapshots}) == 1
    store = EventStore(engine, sensor="snap", settings=FAST)
    for batch in batches:
        store.write_connections(batch)
        assert store.flush(10)
    stats = store.close()
    assert stats.connections == 3 and stats.conn_pending == stats.conn_dropped == 0
    with Session(engine) as session:
        rows = list(session.exec(select(Connection)))
    assert len(rows) == 1
    final = rows[0]
    assert not final.in_progress and final.ended == "end of input"
    assert final.orig_pkts == 30 and final.sensor == "snap"
    assert final.last_ts.timestamp() == pytest.approx(1_764_000_000.0 + 148.0)


def test_retention_goes_by_stored_time(engine: sa.Engine) -> None:
    store = EventStore(engine, sensor="ret", settings=FAST)
    tracker = ConnTracker()
    tracker.update(make_packets(4, src="10.2.0.1", dst=["10.2.0.2", "10.2.0.3", "10.2.0.4",
                                                          "10.2.0.5"], proto=17))
    store.write_connections(tracker.flush())
    assert store.flush(10)
    with Session(engine) as session:
        old = list(session.exec(select(col(Connection.uid)).limit(2)))
        session.exec(update(Connection).where(col(Connection.uid).in_(old))
                     .values(updated_at=utcnow() - timedelta(days=8)))
        session.commit()
        # packet time does not matter: a recording from years ago stored now is kept
        assert apply_conn_retention(session=session, max_age=timedelta(days=7)) == 2
        left = set(session.exec(select(col(Connection.uid))))
    assert len(left) == 2 and not left & set(old)
    store.close()


def test_the_writer_applies_connection_retention_as_it_goes(engine: sa.Engine) -> None:
    settings = replace(FAST, conn_retention_days=1.0, retention_interval=0.0)
    tracker = ConnTracker()
    tracker.update(make_packets(2, src="10.3.0.1", dst=["10.3.0.2", "10.3.0.3"], proto=17))
    records = tracker.flush()
    store = EventStore(engine, sensor="ret2", settings=settings)
    store.write_connections(records[:1])
    assert store.flush(10)
    with Session(engine) as session:
        session.exec(update(Connection).values(updated_at=utcnow() - timedelta(days=2)))
        session.commit()
    store.write_connections(records[1:])  # the next write runs retention afterwards
    assert store.flush(10)
    store.close()
    with Session(engine) as session:
        assert list(session.exec(select(col(Connection.uid)))) == [records[1].uid]


def test_export_writes_the_conn_log_back_and_the_connections_of_an_event(
        scored_sample: Path) -> None:
    db = f"sqlite:///{scored_sample}/netids.sqlite"
    out = scored_sample / "exported.log"
    done = subprocess.run([sys.executable, APP, "export", "--db", db, "--connections",
                           "--format", "zeek", "--out", str(out)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "8705 connections written" in done.stderr

    def body(path: Path) -> set[str]:
        return {line for line in path.read_text().splitlines() if not line.startswith("#")}

    assert body(out) == body(scored_sample / "conn.log")  # every field survives the database
    engine = open_database(db)
    with Session(engine) as session:
        flood = max((e for e in query_events(session=session, limit=None)
                     if e.kind == "flood" and e.proto == "TCP"), key=lambda e: e.packets)
        behind = count_connections(session=session, filter=ConnFilter(event=flood.id))
    engine.dispose()
    csv_out = scored_sample / "behind.csv"
    done = subprocess.run([sys.executable, APP, "export", "--db", db, "--connections",
                           "--format", "csv", "--event", flood.id, "--out", str(csv_out)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = csv_out.read_text().splitlines()
    assert lines[0].startswith("ts,uid,id.orig_h") and len(lines) == behind + 1
    wrong = subprocess.run([sys.executable, APP, "export", "--db", db, "--format", "zeek",
                            "--out", str(scored_sample / "x")], capture_output=True, text=True,
                           timeout=120)
    assert wrong.returncode != 0 and wrong.stderr.count("\n") == 1
    assert "--connections --format zeek or csv" in wrong.stderr
