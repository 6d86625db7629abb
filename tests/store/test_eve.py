"""``--eve FILE``: stored events as Suricata-EVE-like JSON lines, as they happen, rotated by
size; on ``score`` and in the app, with real captures, a real SQLite file and real files."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import defaultdict
from dataclasses import replace
from pathlib import Path

from sqlmodel import Session, select

from netids.config import PROJECT_ROOT, EveSettings, Settings
from netids.controller import Controller
from netids.detect.event_records import EventUpdate
from netids.detect.explain import KIND_RULES, SCANS, TARGET_FLOOD
from netids.store.engine import make_engine
from netids.store.eve import EveLog, signature_id
from netids.store.tables import Event
from tests.support import SAMPLE

APP = str(PROJECT_ROOT / "app.py")
FLOOD = "attack/stopddos__pkt.TCP.synflood.spoofed.pcap"
SCAN = "attack/evilfingers__TCP_CONNECT_SCAN.pcap"


def app(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, APP, *map(str, args)], capture_output=True,
                          text=True, timeout=300)


def lines_by_event(*paths: Path) -> dict[str, list[dict]]:
    """Every line of the EVE files, parsed, grouped by event id in file order."""
    events: dict[str, list[dict]] = defaultdict(list)
    for path in paths:
        for line in path.read_text(encoding="ascii").splitlines():
            record = json.loads(line)
            events[record["netids"]["event_id"]].append(record)
    return events


def update(explanation: str, kind: str = "port scan", packets: int = 10,
           src: str = "10.0.0.1") -> EventUpdate:
    return EventUpdate(id="0123456789abcdef0123456789abcdef", first_seen=1.7e9,
                       last_seen=1.7e9 + 5, src=src, dst="10.0.0.2", src_port=None,
                       dst_port=22, proto="TCP", kind=kind, packets=packets, score_max=0.9995,
                       score_mean=0.9992, severity="anomalous", explanation=explanation,
                       threshold=0.999, src_count=1, dst_count=1)


def test_score_writes_each_stored_event_new_then_grown_then_closed(
        tmp_path: Path, shared_data: Path) -> None:
    eve, db = tmp_path / "eve.json", tmp_path / "e.sqlite"
    done = app("score", shared_data / SCAN, "--out", tmp_path / "s.csv", "--eve", eve,
               "--db", f"sqlite:///{db}")
    assert done.returncode == 0, done.stderr
    with Session(make_engine(f"sqlite:///{db}")) as session:
        stored = {e.id: e for e in session.exec(select(Event))}
    events = lines_by_event(eve)
    assert set(events) == set(stored) and stored
    for event_id, lines in events.items():
        states = [r["netids"]["state"] for r in lines]
        assert states[0] == "new" and states[-1] == "closed"
        assert set(states[1:-1]) <= {"update"}
        packets = [r["netids"]["packets"] for r in lines]
        assert packets == sorted(packets) and packets[-1] == stored[event_id].packets
        assert len(lines) <= packets[-1].bit_length() + 3  # doubling: a few lines, not a batch each
        assert {r["flow_id"] for r in lines} == {int(event_id[:13], 16)}
        last = lines[-1]
        assert last["event_type"] == "alert" and last["proto"] == stored[event_id].proto
        assert last["src_ip"] == stored[event_id].src
        assert last["alert"]["signature"] == f"NETIDS {stored[event_id].kind}"
        assert last["alert"]["severity"] in (1, 2, 3)
        assert last["netids"]["why"] == stored[event_id].explanation
        assert last["timestamp"].endswith("+0000")
    assert any(r["alert"]["category"] == "Detection of a Network Scan"
               for lines in events.values() for r in lines)


def test_the_eve_file_rotates_by_size_and_keeps_n_files(tmp_path: Path,
                                                        shared_data: Path) -> None:
    eve = tmp_path / "eve.json"
    done = app("score", shared_data / FLOOD, "--out", tmp_path / "s.csv", "--eve", eve,
               "--eve-max-mb", "0.002", "--eve-keep", "2", "--batch-size", "512")
    assert done.returncode == 0, done.stderr
    files = sorted(tmp_path.glob("eve.json*"))
    assert [f.name for f in files] == ["eve.json", "eve.json.1", "eve.json.2"]
    assert all(0 < f.stat().st_size <= 0.002 * 2**20 for f in files)
    events = lines_by_event(*files)  # whole lines in every file: each parses
    assert any(lines[-1]["netids"]["state"] == "closed" for lines in events.values())


def test_hostile_text_cannot_break_a_line_or_forge_a_field(tmp_path: Path) -> None:
    hostile = ('evil"}\n{"event_type":"forged"}\r\u2028\u2029\x00\x1b[31m\\\udcff'
               '\u00e9\U0001f600 </script>')
    log = EveLog(EveSettings(tmp_path / "eve.json"), sensor="s\n1")
    log.write([update(hostile, kind="port\nscan")], [])
    log.write([], [update(hostile, kind="port\nscan", packets=40)])
    log.close()
    raw = (tmp_path / "eve.json").read_bytes()
    assert raw.isascii() and raw.count(b"\n") == 2
    first, last = (json.loads(line) for line in raw.splitlines())
    assert [first["netids"]["state"], last["netids"]["state"]] == ["new", "closed"]
    assert first["event_type"] == "alert" and first["host"] == "s\n1"
    assert first["netids"]["why"] == hostile.replace("\udcff", "\ufffd")
    assert first["alert"]["signature"] == "NETIDS port\nscan"


def test_an_event_gets_a_line_when_it_doubles_rises_or_changes_hands(tmp_path: Path) -> None:
    log = EveLog(EveSettings(tmp_path / "eve.json"))
    for packets, src in ((10, "10.0.0.1"), (15, "10.0.0.1"), (20, "10.0.0.1"), (30, "10.0.0.1"),
                         (31, ""), (39, "")):
        log.write([update("why", packets=packets, src=src)], [])
    log.close()
    lines = lines_by_event(tmp_path / "eve.json")["0123456789abcdef0123456789abcdef"]
    assert [(r["netids"]["state"], r["netids"]["packets"]) for r in lines] == [
        ("new", 10), ("update", 20), ("update", 31)]
    assert "src_ip" not in lines[-1]  # many sources merged: no address to name


def test_every_kind_has_its_own_signature_id() -> None:
    kinds = {kind for _, kind in KIND_RULES} | set(SCANS) | {TARGET_FLOOD}
    assert len({signature_id(k) for k in kinds}) == len(kinds)


def test_a_full_disk_loses_eve_lines_not_events(tmp_path: Path, shared_data: Path) -> None:
    db = tmp_path / "e.sqlite"
    done = app("score", shared_data / SCAN, "--out", tmp_path / "s.csv", "--eve", "/dev/full",
               "--db", f"sqlite:///{db}")
    assert done.returncode == 2
    assert "Traceback" not in done.stderr  # the loss is logged once as it starts, then summed up
    assert done.stderr.splitlines()[-1].endswith(
        "EVE lines could not be written to /dev/full: No space left on device")
    with Session(make_engine(f"sqlite:///{db}")) as session:
        assert session.exec(select(Event)).first() is not None  # every event still stored


def test_an_unwritable_eve_path_is_one_line_for_score_and_the_app(tmp_path: Path,
                                                                  shared_data: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    for args in (("score", shared_data / SCAN, "--out", tmp_path / "s.csv"), ()):
        done = app(*args, "--eve", blocker / "eve.json")
        assert done.returncode == 2, done.stderr
        assert done.stderr == f"error: {blocker / 'eve.json'}: cannot write the EVE file " \
                              "(Not a directory)\n"


async def test_the_app_writes_the_events_of_an_analysed_file(tmp_path: Path,
                                                              trained_model: Path) -> None:
    eve = tmp_path / "app-eve.json"
    settings = replace(Settings(), db_url=f"sqlite:///{tmp_path / 'c.sqlite'}",
                       model_path=trained_model, eve=EveSettings(eve))
    controller = Controller(settings)
    controller.open()
    await controller.start_file(SAMPLE)
    await controller.wait()
    shown = {u.id: u for u in controller.live.events}
    await controller.close()
    events = lines_by_event(eve)
    assert set(events) == set(shown)
    assert all(lines[-1]["netids"]["state"] == "closed" for lines in events.values())
    assert all(lines[-1]["netids"]["packets"] == shown[i].packets for i, lines in events.items())
