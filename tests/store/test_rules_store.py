"""Allow-list rules in the database: persisted on SQLite and PostgreSQL, applied by the sink
of ``score --db`` on the bundled sample (its scanner's port scans are not stored, the rule
counts them), and removed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import sqlalchemy as sa
from sqlmodel import Session

from netids.config import PROJECT_ROOT
from netids.detect.event_records import EventUpdate
from netids.detect.rules import Rule
from netids.store.engine import open_database
from netids.store.queries import query_events
from netids.store.rules import RuleBook, add_rule, list_rules, remove_rule, to_rule
from tests.store.test_storage import FAST

APP = str(PROJECT_ROOT / "app.py")
SAMPLE = PROJECT_ROOT / "netids" / "samples" / "lab_sample.pcap"


def update(eid: str, src: str, kind: str, packets: int) -> EventUpdate:
    return EventUpdate(eid, 0.0, 1.0, src, "10.77.0.1", None, 22, "TCP", kind, packets, 1.0,
                       1.0, "anomalous", "", 0.999, 1, 1)


def test_rules_persist_count_what_they_suppress_and_go(storage_url: str) -> None:
    engine = open_database(storage_url, FAST)
    with Session(engine) as session:
        row = add_rule(Rule(src="10.77.0.0/24", kind="port scan", note="<b>lab</b>",
                            created_by="admin"), session=session)
    book = RuleBook(engine, interval=3600)
    kept = book.keep([update("a", "10.77.0.66", "port scan", 5),
                      update("b", "10.78.0.1", "port scan", 7),
                      update("c", "10.77.0.66", "flood", 9)])
    assert [u.id for u in kept] == ["b", "c"]
    assert book.keep([update("a", "10.77.0.66", "port scan", 12)]) == []  # grew: same event
    book.sync()
    with Session(engine) as session:
        (stored,) = list_rules(session=session)
        assert (stored.events, stored.packets, stored.note) == (1, 12, "<b>lab</b>")
        assert stored.last_hit is not None and to_rule(stored).kind == "port scan"
        assert remove_rule(row.id or 0, session=session)
        assert not remove_rule(row.id or 0, session=session)
        assert list_rules(session=session) == []
    assert book.keep([update("d", "10.77.0.66", "port scan", 1)])  # reloaded: nothing covers it
    engine.dispose()


def score_db(url: str, folder: Path) -> None:
    done = subprocess.run(
        [sys.executable, APP, "score", str(SAMPLE), "--out", str(folder / "s.csv"), "--db", url,
         "--workers", "0"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr


def test_score_db_does_not_store_what_a_rule_marks_as_expected(tmp_path: Path) -> None:
    plain, ruled = f"sqlite:///{tmp_path}/plain.sqlite", f"sqlite:///{tmp_path}/ruled.sqlite"
    score_db(plain, tmp_path)
    engine = open_database(ruled)
    with Session(engine) as session:
        add_rule(Rule(src="10.77.0.66", kind="port scan"), session=session)
    score_db(ruled, tmp_path)
    before, after = stored(open_database(plain)), stored(engine)
    scans = [e for e in before if e.kind == "port scan" and e.src == "10.77.0.66"]
    assert scans  # the sample's scanner
    assert not [e for e in after if e.kind == "port scan" and e.src == "10.77.0.66"]
    assert {e.id for e in after} and len(after) == len(before) - len(scans)
    with Session(engine) as session:
        (rule,) = list_rules(session=session)
    assert rule.events == len(scans) and rule.packets == sum(e.packets for e in scans)


def stored(engine: sa.Engine) -> list:
    with Session(engine) as session:
        return query_events(session=session, limit=None)
