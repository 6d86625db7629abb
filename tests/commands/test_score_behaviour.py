"""One score per packet: ``score`` and ``evaluate`` give each packet the larger of its header
score and its connection's behaviour score, on real captures with the shipped model."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from netids.capture.pcapfile import read_batches
from netids.config import PROJECT_ROOT
from netids.detect.connections import ConnConfig
from netids.detect.packet_behaviour import behaviour_scores
from netids.detect.pipeline import Pipeline
from netids.detect.tracking import ConnFeed
from netids.store.sink import EventSink
from netids.training.checkpoint import load_detector

APP = str(PROJECT_ROOT / "app.py")
SSH_GUESSING = "attack/zeek__sshguess.pcap"


def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, APP, *map(str, args)], capture_output=True,
                          text=True, timeout=300)


def scores(tmp_path: Path, capture: Path, *extra: str) -> list[dict[str, str]]:
    out = tmp_path / f"scores{len(extra)}.csv"
    done = run("score", capture, "--out", out, *extra)
    assert done.returncode == 0, done.stderr
    with out.open() as f:
        return list(csv.DictReader(f))


def sessions_opened(rows: list[dict[str, str]], server_port: str) -> list[float]:
    """Times of the client's SYN of each session."""
    return [float(r["timestamp"]) for r in rows
            if r["dport"] == server_port and r["tcp_flags"] == "S"]


def test_a_share_of_one_lands_on_the_threshold_and_more_evidence_ranks_higher() -> None:
    for t in (0.9, 0.99, 0.999, 0.9999, 0.995):
        score, nines = behaviour_scores(np.array([1.0]), t)
        assert score[0] == t and np.isclose(nines[0], -np.log10(1 - t))
    shares = np.linspace(0.0, 5.0, 501)
    score, nines = behaviour_scores(shares, 0.999)
    assert (np.diff(nines) > 0).all() and (np.diff(score) >= 0).all()
    assert (score[shares < 1.0] < 0.999).all() and (score[shares >= 1.0] >= 0.999).all()


def test_ssh_guessing_scores_past_the_threshold_after_the_tenth_session(
        tmp_path: Path, shared_data: Path) -> None:
    capture = shared_data / SSH_GUESSING
    merged = scores(tmp_path, capture)
    header = scores(tmp_path, capture, "--no-behaviour")
    opened = sessions_opened(header, "22")
    assert len(opened) == 11  # the capture's guesses; the detector's limit is 10
    guessing = [i for i, r in enumerate(header) if float(r["timestamp"]) >= opened[10]]
    assert guessing
    assert all(float(header[i]["score"]) < 0.999 for i in guessing)  # headers alone: normal
    assert all(merged[i]["anomaly"] == "1" for i in guessing)
    assert {merged[i]["kind"] for i in guessing} == {"brute force"}
    before = [i for i, r in enumerate(header) if float(r["timestamp"]) < opened[9]]
    assert all(merged[i]["anomaly"] == "0" for i in before)  # nine sessions: not yet


def test_benign_scores_are_unchanged_where_no_behaviour_key_has_evidence(
        tmp_path: Path, shared_data: Path) -> None:
    """Only answers move (netids/detect/answered.py): a SYN-ACK or reset takes the score of
    the packet it answers when that scored 2 nines or more, here the capture's first SYN;
    nothing crosses the threshold."""
    capture = shared_data / "benign/zeek__bro.org.pcap"
    merged = scores(tmp_path, capture)
    header = scores(tmp_path, capture, "--no-behaviour")
    moved = [i for i, (m, h) in enumerate(zip(merged, header, strict=True)) if m != h]
    assert len(moved) <= 0.01 * len(merged)
    for i in moved:
        answer, own = merged[i], header[i]
        assert answer["tcp_flags"] in ("SA", "R", "RA") and answer["anomaly"] == own["anomaly"]
        assert float(answer["nines"]) > float(own["nines"])
        assert any(r["nines"] == answer["nines"] and float(r["nines"]) >= 2.0
                   and (r["src"], r["dst"], r["sport"], r["dport"])
                   == (answer["dst"], answer["src"], answer["dport"], answer["sport"])
                   for r in header[:i])


def test_behaviour_only_anomalies_raise_the_behaviour_event_not_a_packet_event(
        shared_data: Path) -> None:
    pipeline = Pipeline(load_detector(PROJECT_ROOT / "models/default.pt"))
    sink = EventSink(None, conns=ConnFeed(ConnConfig()))
    flagged = []
    for frames in read_batches(shared_data / SSH_GUESSING, 64):
        scored, _ = sink.rescore(pipeline.process(frames))
        sink.add(scored)
        flagged.append(int(scored.anomalous.sum()))
    sink.finish()
    assert sink.behaviour_flagged == sum(flagged) > 0
    assert sink.aggregator.opened == 0  # no packet-model event for them
    assert sink.behaviour is not None and sink.behaviour.opened == 1


@pytest.mark.parametrize("capture", [SSH_GUESSING, "attack/zeek__bruteforce.pcap"])
def test_evaluate_reports_the_session_kinds_with_behaviour(
        tmp_path: Path, shared_data: Path, capture: str) -> None:
    path = shared_data / capture
    labels = path.with_suffix(".labels.csv")
    done = run("evaluate", path, "--labels", labels, "--no-baselines")
    assert done.returncode == 0, done.stderr
    kind = "ssh_bruteforce" if "ssh" in capture else "ftp_bruteforce"
    rows = [line for line in done.stdout.splitlines() if line.startswith(f"| {kind}")]
    assert [r.split("|")[3].strip() for r in rows] == ["netids transformer",
                                                        "netids + behaviour"]
