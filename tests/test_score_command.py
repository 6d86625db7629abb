"""``python app.py score``: the CSV contract, and plain one-line errors for bad input."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest

from netids.config import PROJECT_ROOT
from netids.pcapfile import read_batches
from tests.data_paths import shared_data

APP = str(PROJECT_ROOT / "app.py")


def score(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, APP, "score", *map(str, args)],
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def model(trained_model: Path) -> Path:
    return trained_model


def test_one_row_per_packet_in_file_order_with_the_contract_columns(tmp_path: Path,
                                                                     model: Path) -> None:
    capture = shared_data() / "attack" / "pcaphunt__hs-tcp_synPingSweepRand.pcapng"
    out = tmp_path / "scores.csv"
    done = score(capture, "--out", out, "--model", model)
    assert done.returncode == 0, done.stderr
    rows = list(csv.DictReader(out.open()))
    stamps = [float(t) for b in read_batches(capture) for t in b.ts]
    assert len(rows) == len(stamps)
    assert [int(r["index"]) for r in rows] == list(range(len(rows)))
    assert [float(r["timestamp"]) for r in rows] == pytest.approx(stamps, abs=1e-6)
    scores = [float(r["score"]) for r in rows]
    assert all(0.0 <= s <= 1.0 for s in scores)
    assert {r["anomaly"] for r in rows} <= {"0", "1"}
    flagged = [r for r in rows if r["anomaly"] == "1"]
    assert all(r["kind"] and r["explanation"] for r in flagged)


def test_undecodable_frames_still_get_rows(tmp_path: Path, model: Path) -> None:
    capture = shared_data() / "other" / "80211beacon.pcapng"
    out = tmp_path / "wifi.csv"
    done = score(capture, "--out", out, "--model", model)
    assert done.returncode == 0, done.stderr
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == sum(len(b) for b in read_batches(capture))
    assert all("unsupported_link_type" in r["status"] for r in rows)


@pytest.mark.parametrize("content, message", [
    (b"", "the file is empty"),
    (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", "not a pcap or pcapng file"),
])
def test_empty_and_foreign_files_fail_in_one_line(tmp_path: Path, model: Path,
                                                  content: bytes, message: str) -> None:
    bad = tmp_path / "bad.pcap"
    bad.write_bytes(content)
    done = score(bad, "--out", tmp_path / "o.csv", "--model", model)
    assert done.returncode != 0
    assert message in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert "Traceback" not in done.stderr


def test_truncated_capture_keeps_the_rows_read_and_fails_in_one_line(tmp_path: Path,
                                                                     model: Path) -> None:
    whole = (shared_data() / "attack" / "evilfingers__TCP_SYN_SCAN.pcap").read_bytes()
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(whole[: len(whole) * 2 // 3])
    out = tmp_path / "cut.csv"
    done = score(cut, "--out", out, "--model", model)
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert "truncated after packet" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert len(list(csv.DictReader(out.open()))) > 0


def test_missing_and_corrupt_models_fail_in_one_line(tmp_path: Path) -> None:
    capture = shared_data() / "attack" / "evilfingers__TCP_SYN_SCAN.pcap"
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"\x80\x02not a checkpoint")
    for model in (tmp_path / "missing.pt", corrupt):
        done = score(capture, "--out", tmp_path / "o.csv", "--model", model)
        assert done.returncode != 0 and "Traceback" not in done.stderr
        assert len(done.stderr.strip().splitlines()) == 1
