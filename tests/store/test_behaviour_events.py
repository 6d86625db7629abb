"""Behaviour alerts in the store: ``score --db`` on real captures (real SQLite files) stores
brute force and scans as events beside the packet model's, finds their connections, writes
them to ``--eve``, and stores none for benign captures."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlmodel import Session

from netids.cli import main
from netids.config import PROJECT_ROOT
from netids.detect.event_records import BEHAVIOUR_KINDS, grade
from netids.store.conn_queries import ConnFilter, count_connections, query_connections
from netids.store.engine import open_database
from netids.store.queries import query_events
from netids.store.tables import Event

APP = str(PROJECT_ROOT / "app.py")
BEHAVIOUR = set(BEHAVIOUR_KINDS.values())


def score_db(capture: Path, folder: Path, *extra: str) -> sa.Engine:
    """``score CAPTURE --db`` in a process of its own, as a user runs it; the database."""
    url = f"sqlite:///{folder}/{capture.stem}.sqlite"
    done = subprocess.run(
        [sys.executable, APP, "score", str(capture), "--out", str(folder / "s.csv"),
         "--db", url, "--workers", "0", *extra], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return open_database(url)


def events(engine: sa.Engine) -> list[Event]:
    with Session(engine) as session:
        return query_events(session=session, limit=1000)


@pytest.mark.parametrize(("capture", "service", "server", "port", "attempts"), [
    ("zeek__sshguess.pcap", "SSH", "192.168.56.103", 22, 10),
    ("zeek__bruteforce.pcap", "FTP", "192.168.56.101", 21, 10)])
def test_a_brute_force_capture_stores_a_brute_force_event_with_its_evidence(
        tmp_path: Path, shared_data: Path, capture: str, service: str, server: str, port: int,
        attempts: int) -> None:
    engine = score_db(shared_data / "attack" / capture, tmp_path)
    (e,) = [e for e in events(engine) if e.kind in BEHAVIOUR]
    assert (e.kind, e.src, e.dst, e.dst_port, e.proto) == (
        "brute force", "192.168.56.1", server, port, "TCP")
    assert e.explanation.startswith(f"{attempts} {service} sessions from 192.168.56.1 to "
                                    f"{server}:{port} in ")
    assert "password guessing" in e.explanation and e.packets == attempts
    # the detector's severity is the level, at the event's threshold or the slider's highest
    assert grade(e.score_max, e.threshold, e.kind) == "medium"
    assert grade(e.score_max, 0.99999, e.kind) == "medium"
    assert e.first_seen < e.last_seen
    with Session(engine) as session:  # the event finds the sessions it counted
        conns = query_connections(session=session, filter=ConnFilter(event=e.id), limit=100)
    assert len([c for c in conns if c.resp_p == port]) >= attempts
    assert {c.orig_h for c in conns} == {"192.168.56.1"}
    engine.dispose()


def test_a_port_scan_stores_a_behaviour_scan_beside_the_packet_models_events(
        tmp_path: Path, shared_data: Path) -> None:
    engine = score_db(shared_data / "attack" / "ppa__portscan.pcap", tmp_path)
    found = events(engine)
    (scan,) = [e for e in found if e.kind in BEHAVIOUR]
    assert (scan.kind, scan.src, scan.dst, scan.packets) == (
        "vertical scan", "10.100.25.14", "10.100.18.12", 25)
    assert "failed to connect to 25 ports on 10.100.18.12" in scan.explanation
    assert "port scan" in {e.kind for e in found}  # the packet model's, still there
    with Session(engine) as session:
        assert count_connections(session=session, filter=ConnFilter(event=scan.id)) >= 25
    engine.dispose()


def test_behaviour_events_go_to_the_eve_file_too(tmp_path: Path, shared_data: Path) -> None:
    """Without ``--db`` as well: the EVE file gets what the database would."""
    eve = tmp_path / "eve.json"
    done = subprocess.run(
        [sys.executable, APP, "score", str(shared_data / "attack" / "zeek__sshguess.pcap"),
         "--out", str(tmp_path / "s.csv"), "--eve", str(eve), "--workers", "0"],
        capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "1 behaviour alerts (scans, brute force, beacons) stored as events" in done.stderr
    lines = [json.loads(line) for line in eve.read_text().splitlines()]
    brute = [r for r in lines if r["netids"]["kind"] == "brute force"]
    assert [r["netids"]["state"] for r in brute] == ["new", "closed"]
    assert brute[0]["alert"]["category"] == "Attempted User Privilege Gain"
    assert (brute[0]["src_ip"], brute[0]["dest_ip"], brute[0]["dest_port"]) == (
        "192.168.56.1", "192.168.56.103", 22)
    assert "10 SSH sessions" in brute[0]["netids"]["why"]


def test_benign_captures_store_no_behaviour_events(
        tmp_path: Path, shared_data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    captures = sorted((shared_data / "benign").glob("zeek__*"))
    assert len(captures) >= 10
    url = f"sqlite:///{tmp_path}/benign.sqlite"
    for capture in captures:  # in this process: one start-up for them all
        code = main(["score", str(capture), "--out", str(tmp_path / "s.csv"), "--db", url,
                     "--workers", "0"])
        assert code == 0, capsys.readouterr().err
    engine = open_database(url)
    with Session(engine) as session:
        assert count_connections(session=session) > 100  # the records were there to judge
    assert [(e.kind, e.explanation) for e in events(engine) if e.kind in BEHAVIOUR] == []
    engine.dispose()
