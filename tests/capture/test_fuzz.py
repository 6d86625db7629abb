"""Corrupted capture files: through the reader and the whole ``score`` path, each gives its
rows or one plain line saying what is wrong; never a hang, a crash or a traceback."""

from __future__ import annotations

import csv
import io
import signal
import struct
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import FrameType

import pytest

from netids.capture.pcapfile import CaptureFileError, read_batches
from netids.commands.score import score_file, scoring_pool
from netids.config import PROJECT_ROOT
from netids.detect.decode import decode
from netids.detect.packets import FLAG_L2, FLAG_UNSUPPORTED_LINK
from netids.detect.pipeline import Pipeline
from netids.training.checkpoint import load_detector
from tests.capture.fuzz_corpus import Damaged, corpus, frames_of, pcap_bytes
from tests.support import model_for_tests

SAMPLE = PROJECT_ROOT / "netids" / "samples" / "lab_sample.pcap"
APP = str(PROJECT_ROOT / "app.py")
SECONDS_PER_FILE = 10  # a file that takes longer is a hang


@pytest.fixture(scope="module")
def damaged() -> list[Damaged]:
    files = list(corpus(frames_of(SAMPLE)))
    assert len(files) >= 300 and len({f.name for f in files}) == len(files)
    return files


@pytest.fixture(scope="module")
def detector():  # type: ignore[no-untyped-def]
    return load_detector(model_for_tests())


class _Hang(Exception):
    pass


def _alarm(signum: int, frame: FrameType | None) -> None:
    raise _Hang


@pytest.fixture
def deadline() -> Iterator[None]:
    previous = signal.signal(signal.SIGALRM, _alarm)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


@pytest.mark.filterwarnings("error::RuntimeWarning")  # a wild value must not become garbage
def test_every_corrupted_file_is_scored_or_refused_in_one_line(
        tmp_path: Path, damaged: list[Damaged], detector, deadline: None) -> None:  # type: ignore[no-untyped-def]
    refused = 0
    pipeline = Pipeline(detector)  # one, as the app keeps one across recordings
    for dmg in damaged:
        path = tmp_path / dmg.name
        path.write_bytes(dmg.data)
        out, before = io.StringIO(), pipeline.stats.packets
        signal.alarm(SECONDS_PER_FILE)
        try:
            with scoring_pool(pipeline, 0) as pool:
                error = score_file(path, out, pipeline, pool, batch_size=16)
        except _Hang:
            pytest.fail(f"{dmg.name}: no answer in {SECONDS_PER_FILE} s")
        finally:
            signal.alarm(0)
        rows = list(csv.DictReader(io.StringIO(out.getvalue())))
        assert len(rows) == pipeline.stats.packets - before, dmg.name  # all read is written
        if error is not None:
            refused += 1
            assert isinstance(error, CaptureFileError), (dmg.name, repr(error))
            message = str(error)
            assert str(path) in message and "\n" not in message, (dmg.name, message)
    assert 0 < refused < len(damaged)  # the corpus holds both readable and refused files


def test_link_type_reserved_and_fcs_bits_are_not_part_of_the_link_type(tmp_path: Path) -> None:
    frames = frames_of(SAMPLE, limit=5)
    plain = tmp_path / "plain.pcap"
    plain.write_bytes(pcap_bytes(frames))
    for extra in (0x0400_0000, 0x1000_0000, 0x03FF_0000, 0xFFFF_0000):  # FCS length, F, reserved
        flagged = tmp_path / f"lt-{extra:#x}.pcap"
        flagged.write_bytes(pcap_bytes(frames, linktype=1 | extra))
        got = [b for b in read_batches(flagged)]
        assert [int(v) for b in got for v in b.linktype] == [1] * len(frames)
        status = decode(got[0]).status
        assert (status & FLAG_L2).all() and not (status & FLAG_UNSUPPORTED_LINK).any()
        assert [b.frame(i) for b in got for i in range(len(b))] == [f for _, f in frames]


@pytest.mark.parametrize("name", [
    "pcap-linktype-0x04000001", "pcap-caplen-4294967295-record-6", "pcapng-short-epb-16-at-end",
])
def test_the_score_command_answers_corrupted_files_in_one_line(
        tmp_path: Path, damaged: list[Damaged], name: str) -> None:
    dmg = next(d for d in damaged if d.name == name)
    path, out = tmp_path / f"{name}.pcap", tmp_path / "scores.csv"
    path.write_bytes(dmg.data)
    done = subprocess.run([sys.executable, APP, "score", str(path), "--out", str(out),
                           "--model", str(model_for_tests()), "--workers", "0"],
                          capture_output=True, text=True, timeout=120)
    assert "Traceback" not in done.stderr
    assert done.returncode in (0, 2), done.stderr
    lines = done.stderr.strip().splitlines()
    if done.returncode == 0:  # the summary, then the bounded tables' sizes
        assert len(lines) == 2 and "packets scored" in lines[0], done.stderr
        assert lines[1].startswith("state: "), done.stderr
    else:
        assert len(lines) == 1, done.stderr
        assert done.stderr.startswith("error: ") and str(path) in done.stderr


def test_reading_the_whole_corpus_takes_seconds(tmp_path: Path, damaged: list[Damaged]) -> None:
    """The reader alone, no model: a regression to quadratic or unbounded reading shows here."""
    import time

    started = time.perf_counter()
    for dmg in damaged:
        path = tmp_path / dmg.name
        path.write_bytes(dmg.data)
        try:
            for batch in read_batches(path):
                decode(batch)
        except CaptureFileError:
            pass
    assert time.perf_counter() - started < 20


def test_a_pcap_record_cannot_claim_more_than_the_reader_allows(tmp_path: Path) -> None:
    frames = frames_of(SAMPLE, limit=3)
    data = bytearray(pcap_bytes(frames))
    struct.pack_into("<I", data, 24 + 8, 0xFFFFFFFF)  # first record's captured length
    path = tmp_path / "huge.pcap"
    path.write_bytes(bytes(data))
    with pytest.raises(CaptureFileError, match="corrupt record after packet 0"):
        list(read_batches(path))
