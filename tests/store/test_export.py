"""Exporting events: ``python app.py export`` round trips, and sample packets tcpdump opens."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa
from sqlmodel import Session

from netids.capture.pcapfile import read_batches
from netids.config import PROJECT_ROOT
from netids.detect.decode import decode
from netids.detect.event_records import EventConfig
from netids.detect.events import EventAggregator
from netids.detect.scored import ScoredBatch
from netids.store.engine import open_database
from netids.store.export import FIELDS, event_record, read_export
from netids.store.queries import query_events
from netids.store.writer import EventStore
from tests.detect.test_events import SYN_FLOOD, scored
from tests.store.test_storage import FAST, T0
from tests.support import make_packets

AWKWARD = 'he said "stop", then left;\nnew line, tab\t, ünïcode ✓, quote \' and \\ backslash'


def app(*args: str) -> subprocess.CompletedProcess[str]:
    """Run ``python app.py ARGS`` as a user would."""
    return subprocess.run(
        [sys.executable, "app.py", *args], cwd=PROJECT_ROOT, capture_output=True, text=True,
        timeout=120,
    )


def app_here(capsys: pytest.CaptureFixture[str], *args: str) -> subprocess.CompletedProcess[str]:
    """The same command run in this process (quicker: the command modules are imported once)."""
    from netids.cli import main

    code = main(list(args))
    out, err = capsys.readouterr()
    return subprocess.CompletedProcess(list(args), code, out, err)


@pytest.fixture
def filled(storage_url: str) -> str:
    """A database with a flood, scans and an event whose explanation is hard to quote."""
    engine = open_database(storage_url, FAST)
    agg = EventAggregator()
    store = EventStore(engine, sensor="lab, 1", settings=FAST)
    flood = make_packets(500, src=[f"10.7.{i // 200}.{i % 200}" for i in range(500)],
                         dst="192.0.2.10", dport=443, ts=T0 + np.arange(500) * 0.01)
    store.write(agg.add(scored(flood, kinds="flood")))
    for i in range(3):
        scan = make_packets(10, src=f"198.51.100.{i + 1}", dst="10.0.0.1", proto=17,
                            ts=T0 + 60 * i + np.arange(10))
        store.write(agg.add(scored(scan, scores=0.55, kinds="port scan")))
    odd = scored(make_packets(2, src="2001:db8::1", dst="2001:db8::2", ts=[T0 + 5, T0 + 6]))
    odd = ScoredBatch(**{**{f: getattr(odd, f) for f in odd.__dataclass_fields__},
                         "explanations": [AWKWARD, AWKWARD]})
    store.write(agg.add(odd))
    store.close()
    engine.dispose()
    return storage_url


def stored_records(url: str) -> list[dict]:
    engine = sa.create_engine(url)
    with Session(engine) as session:
        rows = query_events(session=session, sort="first_seen", descending=False, limit=None)
        records = [event_record(e) for e in rows]
    engine.dispose()
    return records


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_export_parses_back_to_the_same_events(filled: str, fmt: str, tmp_path: Path) -> None:
    out = tmp_path / f"events.{fmt}"
    result = app("export", "--db", filled, "--format", fmt, "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert "5 events written" in result.stderr
    expected = stored_records(filled)
    assert len(expected) == 5
    assert read_export(out) == expected
    text = out.read_text(encoding="utf-8")
    if fmt == "csv":
        rows = list(csv.DictReader(text.splitlines(keepends=True)))
        assert list(rows[0]) == list(FIELDS)
    else:
        rows = [json.loads(line) for line in text.splitlines()]
        assert all(list(r) == list(FIELDS) for r in rows)
    flood = next(r for r in rows if r["kind"] == "flood")
    assert flood["src_ip"] == "" and flood["dest_ip"] == "192.0.2.10"
    assert str(flood["dest_port"]) == "443" and str(flood["packets"]) == "500"
    assert flood["timestamp"].endswith("+00:00") and flood["sensor"] == "lab, 1"
    assert flood["event_type"] == "anomaly" and flood["severity"] == "anomalous"
    assert any(r["explanation"] == AWKWARD for r in rows)


def test_export_filters_and_stdout(filled: str, capsys: pytest.CaptureFixture[str]) -> None:
    result = app_here(capsys, "export", "--db", filled, "--format", "jsonl", "--out", "-",
                 "--kind", "port scan", "--src", "198.51.100.0/30")
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert sorted(r["src_ip"] for r in rows) == ["198.51.100.1", "198.51.100.2", "198.51.100.3"]
    result = app_here(capsys, "export", "--db", filled, "--format", "csv", "--out", "-",
                      "--min-severity", "anomalous", "--until", "2025-11-24T16:00:04")
    assert result.returncode == 0, result.stderr
    assert [r["kind"] for r in csv.DictReader(result.stdout.splitlines())] == ["flood"]


def test_export_errors_are_one_line(
    filled: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = app("export", "--db", f"sqlite:///{tmp_path}/nope.sqlite", "--format", "csv",
                  "--out", str(tmp_path / "x.csv"))
    assert missing.returncode == 2 and missing.stderr.strip() == (
        f"error: no database at {tmp_path}/nope.sqlite"
    )
    bad = app_here(capsys, "export", "--db", filled, "--format", "csv", "--out", "-",
                   "--src", "'; DROP --")
    assert bad.returncode == 2 and "not an address or CIDR" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1
    nopcap = app_here(capsys, "export", "--db", filled, "--format", "pcap",
                      "--out", str(tmp_path / "x.pcap"))
    assert nopcap.returncode == 2 and "--event" in nopcap.stderr
    noevent = app_here(capsys, "export", "--db", filled, "--format", "pcap", "--event", "0" * 32,
                  "--out", str(tmp_path / "x.pcap"))
    assert noevent.returncode == 2 and "no event" in noevent.stderr
    assert len(stored_records(filled)) == 5


def test_sample_packets_export_as_a_pcap_tcpdump_reads(storage_url: str, tmp_path: Path,
                                                       shared_data: Path) -> None:
    frames = next(read_batches(shared_data / SYN_FLOOD, batch_size=300))
    engine = open_database(storage_url, FAST)
    store = EventStore(engine, sensor="s", settings=FAST)
    (update,) = EventAggregator(EventConfig(samples=5)).add(scored(decode(frames), frames=frames))
    store.write([update])
    store.close()
    engine.dispose()
    out = tmp_path / "samples.pcap"
    result = app("export", "--db", storage_url, "--format", "pcap", "--event", update.id,
                 "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert "5 sample packets" in result.stderr
    dump = subprocess.run(["tcpdump", "-nn", "-r", str(out)], capture_output=True, text=True,
                          timeout=30)
    assert dump.returncode == 0, dump.stderr
    lines = dump.stdout.splitlines()
    assert len(lines) == 5
    assert all("> 10.10.10.10.25565: Flags [S]" in line for line in lines)
    (back,) = list(read_batches(out))
    assert [back.frame(i) for i in range(5)] == [frames.frame(i) for i in range(5)]
    assert np.allclose(back.ts, frames.ts[:5], atol=1e-6)
