"""``python app.py score``: the CSV contract, and plain one-line errors for bad input."""

from __future__ import annotations

import csv
import multiprocessing
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from netids.capture.pcapfile import read_batches
from netids.cli import build_parser, settings_from
from netids.commands import CommandError
from netids.commands import score as score_command
from netids.config import PROJECT_ROOT
from netids.detect.packet_behaviour import StreamBehaviour
from netids.detect.pipeline import Pipeline
from netids.training.checkpoint import load_detector

APP = str(PROJECT_ROOT / "app.py")


def score(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, APP, "score", *map(str, args)],
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def model(trained_model: Path) -> Path:
    return trained_model


def test_one_row_per_packet_in_file_order_with_the_contract_columns(
        tmp_path: Path, model: Path, shared_data: Path) -> None:
    capture = shared_data / "attack" / "pcaphunt__hs-tcp_synPingSweepRand.pcapng"
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


def test_undecodable_frames_still_get_rows(tmp_path: Path, model: Path, shared_data: Path) -> None:
    capture = shared_data / "other" / "80211beacon.pcapng"
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


def test_truncated_capture_keeps_the_rows_read_and_fails_in_one_line(
        tmp_path: Path, model: Path, shared_data: Path) -> None:
    whole = (shared_data / "attack" / "evilfingers__TCP_SYN_SCAN.pcap").read_bytes()
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(whole[: len(whole) * 2 // 3])
    out = tmp_path / "cut.csv"
    done = score(cut, "--out", out, "--model", model)
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert "truncated after packet" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert len(list(csv.DictReader(out.open()))) > 0


def test_missing_and_corrupt_models_fail_in_one_line(tmp_path: Path, shared_data: Path) -> None:
    capture = shared_data / "attack" / "evilfingers__TCP_SYN_SCAN.pcap"
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"\x80\x02not a checkpoint")
    for model in (tmp_path / "missing.pt", corrupt):
        done = score(capture, "--out", tmp_path / "o.csv", "--model", model)
        assert done.returncode != 0 and "Traceback" not in done.stderr
        assert len(done.stderr.strip().splitlines()) == 1


# the scoring workers: same rows as a plain sequential run, clean failures, nothing left behind


def test_rows_equal_a_plain_sequential_run_of_the_pipeline(tmp_path: Path, model: Path,
                                                           shared_data: Path) -> None:
    capture = shared_data / "mixed_dev.pcap"  # real traffic with 19 attack kinds
    parallel, inline = tmp_path / "parallel.csv", tmp_path / "inline.csv"
    for out, workers in ((parallel, "1"), (inline, "0")):
        done = score(capture, "--out", out, "--model", model, "--workers", workers)
        assert done.returncode == 0, done.stderr
    assert parallel.read_bytes() == inline.read_bytes()

    pipeline = Pipeline(load_detector(model), adapt=True)  # the reference, as score runs it
    behaviour = StreamBehaviour()  # with each connection's behaviour merged in
    scored = [behaviour.rescore(pipeline.process(frames))[0] for frames in read_batches(capture)]
    scores = np.concatenate([s.scores for s in scored])
    anomalous = np.concatenate([s.anomalous for s in scored])
    kinds = np.full(len(scores), "", dtype=object)
    texts = np.full(len(scores), "", dtype=object)
    first = 0
    for s in scored:
        kinds[first + s.anomaly_index] = s.kinds
        texts[first + s.anomaly_index] = s.explanations
        first += len(s)
    rows = list(csv.DictReader(parallel.open()))
    assert len(rows) == len(scores) == 66173
    assert [int(r["index"]) for r in rows] == list(range(len(rows)))
    np.testing.assert_allclose([float(r["score"]) for r in rows], scores, rtol=0, atol=1e-6)
    assert [r["anomaly"] == "1" for r in rows] == anomalous.tolist()
    assert anomalous.sum() > 1000
    assert [r["kind"] for r in rows] == kinds.tolist()
    assert [r["explanation"] for r in rows] == texts.tolist()


def test_truncated_capture_writes_every_row_before_the_cut_and_leaves_no_process(
        tmp_path: Path, model: Path, shared_data: Path) -> None:
    whole = (shared_data / "mixed_dev.pcap").read_bytes()
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(whole[: len(whole) * 2 // 3])
    out = tmp_path / "cut.csv"
    proc = subprocess.Popen([sys.executable, APP, "score", str(cut), "--out", str(out),
                             "--model", str(model), "--workers", "2"],
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 2 and "Traceback" not in stderr
    assert len(stderr.strip().splitlines()) == 1
    readable = int(re.search(r"truncated after packet (\d+)", stderr).group(1))
    assert f"({readable} packets scored and written to" in stderr
    assert len(list(csv.DictReader(out.open()))) == readable > 30000
    assert _group_is_gone(proc.pid)


def test_a_failing_worker_stops_the_run_in_one_line_with_the_rows_before_it(
        tmp_path: Path, model: Path, monkeypatch: pytest.MonkeyPatch, shared_data: Path) -> None:
    judge = Pipeline.judge

    def judge_until_the_third_batch(self: Pipeline, packets, features, *rest):  # type: ignore[no-untyped-def]
        if packets.ts[0] >= third_batch_starts:
            raise RuntimeError("the model ran out of\nmemory")
        return judge(self, packets, features, *rest)

    capture = shared_data / "mixed_dev.pcap"
    third_batch_starts = float(list(read_batches(capture, 4096))[2].ts[0])
    monkeypatch.setattr(Pipeline, "judge", judge_until_the_third_batch)  # forked workers see it
    out = tmp_path / "failed.csv"
    with pytest.raises(CommandError) as caught:
        run_score(capture, out, model)
    message = str(caught.value)
    assert message.startswith("scoring failed: RuntimeError: the model ran out of memory")
    assert "(8192 packets scored and written to" in message and "\n" not in message
    assert len(list(csv.DictReader(out.open()))) == 8192
    assert multiprocessing.active_children() == []


def test_a_killed_worker_stops_the_run_in_one_line(tmp_path: Path, model: Path,
                                                  monkeypatch: pytest.MonkeyPatch,
                                                  shared_data: Path) -> None:
    judge = Pipeline.judge

    def killed_at_the_third_batch(self: Pipeline, packets, features, *rest):  # type: ignore[no-untyped-def]
        in_a_worker = multiprocessing.parent_process() is not None  # the main one judges too
        if in_a_worker and packets.ts[0] >= third_batch_starts:
            os.kill(os.getpid(), signal.SIGKILL)
        return judge(self, packets, features, *rest)

    capture = shared_data / "mixed_dev.pcap"
    third_batch_starts = float(list(read_batches(capture, 4096))[2].ts[0])
    monkeypatch.setattr(Pipeline, "judge", killed_at_the_third_batch)
    with pytest.raises(CommandError, match=r"stopped unexpectedly \(exit code -9\)"):
        run_score(capture, tmp_path / "killed.csv", model)
    assert multiprocessing.active_children() == []


def test_ctrl_c_stops_every_process_without_a_traceback(tmp_path: Path, model: Path,
                                                        shared_data: Path) -> None:
    whole = (shared_data / "mixed_dev.pcap").read_bytes()
    big = tmp_path / "big.pcap"
    big.write_bytes(whole + whole[24:] * 15)  # ~1M packets: seconds of work on a quiet machine
    out = tmp_path / "big.csv"
    proc = subprocess.Popen([sys.executable, APP, "score", str(big), "--out", str(out),
                             "--model", str(model), "--workers", "2"],
                            stderr=subprocess.PIPE, text=True, start_new_session=True,
                            # as in a terminal: a shell's background job inherits SIGINT ignored
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and (not out.exists() or out.stat().st_size < 1_000_000):
        time.sleep(0.05)
    assert proc.poll() is None, "finished before it could be interrupted"
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does: the whole group
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "Traceback" not in stderr, stderr
    assert _group_is_gone(proc.pid)


def run_score(capture: Path, out: Path, model: Path) -> int:
    """``app.py score`` in this process (so monkeypatches reach the forked workers)."""
    argv = ["score", str(capture), "--out", str(out), "--model", str(model), "--workers", "2"]
    args, _ = build_parser(argv).parse_known_args(argv)
    return score_command.run(args, settings_from(args))


def _group_is_gone(pgid: int) -> bool:
    """True once no process of the group (the command and its workers) is left."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.1)
    return False


def test_db_events_equal_those_of_a_run_in_one_process(tmp_path: Path, model: Path,
                                                       shared_data: Path) -> None:
    capture = shared_data / "mixed_dev.pcap"
    exported = []
    for workers in ("1", "0"):
        db = f"sqlite:///{tmp_path}/events{workers}.sqlite"
        done = score(capture, "--out", tmp_path / f"s{workers}.csv", "--model", model,
                     "--db", db, "--workers", workers)
        assert done.returncode == 0, done.stderr
        out = tmp_path / f"events{workers}.csv"
        subprocess.run([sys.executable, APP, "export", "--db", db, "--format", "csv",
                        "--out", str(out)], check=True, capture_output=True, timeout=120)
        rows = [{k: v for k, v in r.items() if k != "event_id"}
                for r in csv.DictReader(out.open())]
        exported.append(sorted(rows, key=lambda r: sorted(r.items())))
    assert len(exported[0]) > 100
    assert exported[0] == exported[1]


def test_every_told_flag_and_port_is_the_packets_own(tmp_path: Path) -> None:
    # anomalies are explained once per group of alike packets: the words must still be true of
    # every packet that gets them (a scanner's SYNs grouped with its resets were told "TCP
    # flags [R]", and ports of a range were told as the one port of the group's first packet)
    sample = PROJECT_ROOT / "netids" / "samples" / "lab_sample.pcap"
    out = tmp_path / "scores.csv"
    done = score(sample, "--out", out, "--model", PROJECT_ROOT / "models" / "default.pt")
    assert done.returncode == 0, done.stderr
    told = {r"TCP flags \[(\w*)\]": "tcp_flags", r"source port (\d+)": "sport",
            r"destination port (\d+)": "dport", r"ICMP type (\d+)": "icmp_type"}
    checked = 0
    for row in csv.DictReader(out.open()):
        for pattern, column in told.items():
            if m := re.search(pattern, row["explanation"]):
                assert m.group(1) == row[column], (row["index"], row["explanation"])
                checked += 1
    assert checked > 1000  # the scan's and the flood's packets are told their flags
