"""``python app.py score CAPTURE --out SCORES.csv --conn CONN.log``: connections as Zeek logs
them, next to the scores, and one-line refusals of bad paths."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from netids.config import PROJECT_ROOT

APP = str(PROJECT_ROOT / "app.py")


def score(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, APP, "score", *map(str, args), "--workers", "0"],
                          capture_output=True, text=True, timeout=300)


def test_conn_log_with_zeeks_header_and_a_known_connection(
        tmp_path: Path, trained_model: Path, shared_data: Path) -> None:
    conn = tmp_path / "conn.log"
    done = score(shared_data / "benign/zeek__ssh.pcap", "--out", tmp_path / "s.csv",
                 "--model", trained_model, "--conn", conn)
    assert done.returncode == 0, done.stderr
    assert f"25 connections written to {conn}" in done.stderr
    lines = conn.read_text().splitlines()
    assert lines[0] == "#separator \\x09" and lines[4] == "#path\tconn"
    fields = next(line for line in lines if line.startswith("#fields")).split("\t")[1:]
    assert fields[:18] == ["ts", "uid", "id.orig_h", "id.orig_p", "id.resp_h", "id.resp_p",
                           "proto", "service", "duration", "orig_bytes", "resp_bytes",
                           "conn_state", "missed_bytes", "history", "orig_pkts",
                           "orig_ip_bytes", "resp_pkts", "resp_ip_bytes"]
    assert lines[-1].startswith("#close\t")
    rows = [dict(zip(fields, line.split("\t"), strict=True)) for line in lines
            if not line.startswith("#")]
    assert len(rows) == 25
    # Zeek's line for this connection (scripts.base.protocols.ssh.basic baseline):
    # 192.168.2.1 55179 192.168.2.158 2200 tcp 2.557930 2757 1721 RSTR ShADadFr 37 4693 29 3225
    [rst] = [r for r in rows if r["id.orig_p"] == "55179"]
    assert [rst[k] for k in ("id.orig_h", "id.resp_h", "id.resp_p", "proto", "duration",
                             "orig_bytes", "resp_bytes", "conn_state", "history", "orig_pkts",
                             "orig_ip_bytes", "resp_pkts", "resp_ip_bytes")] == [
        "192.168.2.1", "192.168.2.158", "2200", "tcp", "2.557930", "2757", "1721", "RSTR",
        "ShADadFr", "37", "4693", "29", "3225"]
    broadcast = [r for r in rows if r["id.resp_h"] == "192.168.1.255"]
    assert [(r["service"], r["duration"], r["conn_state"]) for r in broadcast] == [
        ("-", "-", "S0")]


def test_bad_conn_paths_are_refused_in_one_line(tmp_path: Path, trained_model: Path,
                                                shared_data: Path) -> None:
    capture = shared_data / "benign/zeek__ssh.pcap"
    out = tmp_path / "s.csv"
    for conn, words in ((tmp_path / "missing" / "conn.log", "cannot write"),
                        (capture, "--conn is the capture itself"),
                        (out, "--conn and --out are the same file")):
        done = score(capture, "--out", out, "--model", trained_model, "--conn", conn)
        assert done.returncode == 2
        assert done.stderr.count("\n") == 1 and words in done.stderr, done.stderr
        assert "Traceback" not in done.stderr
    assert capture.stat().st_size > 0


def test_a_flood_is_counted_not_stored_but_the_conn_log_keeps_every_record(
        tmp_path: Path, trained_model: Path) -> None:
    """3,000 spoofed SYNs in 1 s and a scanner's 40 probes: the database keeps the scanner's
    records and its scan event, the conn.log all 3,040, and the summary says what was
    folded."""
    from sqlmodel import Session, create_engine, func, select

    from netids.capture.pcapfile import write_pcap
    from netids.store.tables import Connection, Event
    from tests.detect.test_conn_fold import probes, spoofed

    frames = spoofed(3000) + probes(40)
    capture = tmp_path / "flood.pcap"
    write_pcap(capture, [(1000.0 + i / len(frames), f) for i, f in enumerate(frames)])
    db, conn = tmp_path / "events.db", tmp_path / "conn.log"
    done = score(capture, "--out", tmp_path / "s.csv", "--model", trained_model,
                 "--db", f"sqlite:///{db}", "--conn", conn)
    assert done.returncode == 0, done.stderr
    assert ("40 connection records stored in the database (3,000 one-packet connections of "
            "floods counted, not stored)") in done.stderr
    assert sum(not line.startswith("#") for line in conn.read_text().splitlines()) == 3040
    with Session(create_engine(f"sqlite:///{db}")) as session:
        assert session.exec(select(func.count()).select_from(Connection)).one() == 40
        kinds = session.exec(select(Event.kind).where(Event.src == "10.9.9.9")).all()
    assert "vertical scan" in kinds
