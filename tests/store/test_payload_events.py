"""Payload findings in the store: ``score --db`` on the shared attack captures (real SQLite
files) stores one event per attacker, target and kind with its evidence and sample packets,
an escalation updates it, and the EVE file gets it too; one event per key an hour."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

from sqlmodel import Session

from netids.capture.pcapfile import read_batches
from netids.detect.decode import decode
from netids.detect.event_records import grade
from netids.detect.payload import PayloadInspector
from netids.detect.payload_events import PayloadEvents
from netids.store.queries import event_samples
from tests.store.test_behaviour_events import APP, events, score_db

PAYLOAD_KINDS = {"web attack", "malware download", "heartbleed"}


def test_sql_injection_capture_stores_one_web_attack_event_with_its_requests(
        tmp_path: Path, shared_data: Path) -> None:
    engine = score_db(shared_data / "attack" / "sanders__http_dvwa_sqlinjection.pcapng", tmp_path)
    (e,) = [e for e in events(engine) if e.kind in PAYLOAD_KINDS]
    assert (e.kind, e.src, e.dst, e.dst_port, e.proto, e.packets) == (
        "web attack", "10.2.2.101", "10.2.2.104", 80, "TCP", 3)
    assert e.explanation == """SQL injection in the parameter "id": "%' or '0'='0\""""
    assert grade(e.score_max, 0.99999, e.kind) == "high"
    with Session(engine) as session:
        samples = event_samples(e.id, session=session)
    assert len(samples) == 3 and b"GET /dvwa/vulnerabilities/sqli/?id=" in samples[0].data
    engine.dispose()


def test_heartbleed_answered_escalates_its_event_to_critical(tmp_path: Path,
                                                               shared_data: Path) -> None:
    engine = score_db(shared_data / "attack" / "zeek__heartbleed-success.pcap", tmp_path)
    (e,) = [e for e in events(engine) if e.kind in PAYLOAD_KINDS]
    assert (e.kind, e.src, e.dst, e.dst_port, e.packets) == (
        "heartbleed", "173.203.79.216", "107.170.241.107", 443, 2)
    assert grade(e.score_max, e.threshold, e.kind) == "critical"
    assert "answered a Heartbleed request" in e.explanation
    engine.dispose()


def test_payload_events_go_to_the_eve_file_and_the_summary(tmp_path: Path,
                                                            shared_data: Path) -> None:
    eve = tmp_path / "eve.json"
    done = subprocess.run(
        [sys.executable, APP, "score",
         str(shared_data / "attack" / "sanders__http_dvwa_directorytraversal.pcapng"),
         "--out", str(tmp_path / "s.csv"), "--eve", str(eve), "--workers", "0"],
        capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "1 payload findings (web attacks, executables over HTTP, Heartbleed)" in done.stderr
    lines = [json.loads(line) for line in eve.read_text().splitlines()]
    (new,) = [r for r in lines if r["netids"]["kind"] == "web attack"
              and r["netids"]["state"] == "new"]
    assert new["alert"]["category"] == "Web Application Attack"
    assert (new["src_ip"], new["dest_ip"], new["dest_port"]) == ("10.2.2.101", "10.2.2.104", 80)
    assert "path traversal" in new["netids"]["why"] and "../etc/passwd" in new["netids"]["why"]


def test_one_event_per_attacker_target_and_kind_an_hour_unless_it_escalates(
        shared_data: Path) -> None:
    """The capture's three injections replayed 40 times a minute apart, then once more
    after a quiet hour: one event handed on, grown, then a new one."""
    inspector, found = PayloadInspector(), []
    for frames in read_batches(shared_data / "attack" / "sanders__http_dvwa_sqlinjection.pcapng"):
        found += inspector.inspect(frames, decode(frames))
    assert len(found) == 3
    p, handed, closed = PayloadEvents(), [], []
    for minute in range(40):
        batch = [dataclasses.replace(f, ts=f.ts + 60.0 * minute) for f in found]
        got, ended = p.update(batch, now=batch[-1].ts, threshold=0.999)
        handed += got
        closed += ended
    # handed on when opened, then only at ten times the packets it last went out with (the
    # 10th, then the 100th), each time as its batch left it
    assert [e.packets for e in handed] == [3, 12, 102]
    assert len({e.id for e in handed}) == 1 and closed == []
    later = [dataclasses.replace(f, ts=f.ts + 60.0 * 39 + 3700.0) for f in found[:1]]
    got, ended = p.update(later, now=later[0].ts, threshold=0.999)
    assert [e.packets for e in ended] == [120] and ended[0].id == handed[0].id
    assert [e.packets for e in got] == [1] and got[0].id != handed[0].id
    assert p.opened == 2
