"""The streaming capture-file reader: every record once, in order, in bounded chunks."""

from __future__ import annotations

import csv
import random
import struct
from pathlib import Path

import pytest

from netids.capture.pcapfile import CHUNK, CaptureFileError, read_batches, write_pcap


def frames_of(path: Path, batch_size: int = 4096) -> list[tuple[float, bytes, int]]:
    return [(float(b.ts[i]), b.frame(i), int(b.wirelen[i]))
            for b in read_batches(path, batch_size) for i in range(len(b))]


def test_every_shared_capture_yields_its_manifest_packet_count(shared_data: Path) -> None:
    data = shared_data
    with (data / "MANIFEST.tsv").open() as fh:
        for row in csv.DictReader(fh, delimiter="\t"):
            if row["packets"]:
                count = sum(len(b) for b in read_batches(data / row["file"]))
                assert count == int(row["packets"]), row["file"]


def test_records_crossing_chunk_boundaries_round_trip(tmp_path: Path) -> None:
    rng = random.Random(3)
    records = [(1_700_000_000 + i * 0.001, rng.randbytes(rng.randint(0, 1514)), 0)
               for i in range(3 * CHUNK // 700)]
    records = [(t, f, len(f) + rng.randint(0, 100)) for t, f, _ in records]
    path = tmp_path / "big.pcap"
    write_pcap(path, records)
    assert path.stat().st_size > 2 * CHUNK
    got = frames_of(path, batch_size=1000)
    assert [f for _, f, _ in got] == [f for _, f, _ in records]
    assert [w for _, _, w in got] == [w for _, _, w in records]
    stamps = [t for t, _, _ in records]
    assert [t for t, _, _ in got] == pytest.approx(stamps, abs=1e-6)  # float64 spacing at 1.7e9
    indexes = [b.first_index for b in read_batches(path, 1000)]
    assert indexes == sorted(indexes) and indexes[0] == 0


def test_big_endian_microsecond_pcap(tmp_path: Path) -> None:
    frame = bytes(range(60))
    path = tmp_path / "be.pcap"
    path.write_bytes(struct.pack(">IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
                     + struct.pack(">IIII", 10, 500_000, 60, 60) + frame)
    assert frames_of(path) == [(10.5, frame, 60)]


def test_truncated_file_yields_what_it_read_then_says_where(tmp_path: Path) -> None:
    path = tmp_path / "cut.pcap"
    write_pcap(path, [(float(i), bytes(100), 100) for i in range(10)])
    path.write_bytes(path.read_bytes()[:-50])
    seen = 0
    with pytest.raises(CaptureFileError, match="truncated after packet 9"):
        for batch in read_batches(path):
            seen += len(batch)
    assert seen == 9


@pytest.mark.parametrize("content, message", [
    (b"", "the file is empty"),
    (b"\x89PNG\r\n\x1a\n....", "not a pcap or pcapng file"),
    (struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
     + struct.pack("<IIII", 0, 0, 0x7FFFFFFF, 60), "corrupt record"),
])
def test_unreadable_files_raise_plain_errors(tmp_path: Path, content: bytes,
                                             message: str) -> None:
    path = tmp_path / "bad.pcap"
    path.write_bytes(content)
    with pytest.raises(CaptureFileError, match=message):
        list(read_batches(path))


def test_missing_file_is_a_plain_error(tmp_path: Path) -> None:
    with pytest.raises(CaptureFileError, match="cannot open"):
        list(read_batches(tmp_path / "nope.pcap"))
