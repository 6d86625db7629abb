"""What a model learned in place was learned from is kept beside it, for the behaviour and
DNS detectors of its next starts (netids/training/kept.py)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from netids.capture.pcapfile import read_batches
from netids.detect.connections import connection_records
from netids.detect.decode import decode
from netids.detect.dns import DnsReader
from netids.detect.packets import PacketBatch
from netids.detect.tracking import ConnFeed
from netids.store.sink import EventSink
from netids.training.kept import LEARNED_DIR, SessionMemory, load_learned, save_learned
from tests.support import SAMPLE


def learned_from(capture: Path) -> tuple[list, list]:
    reader, packets, dns = DnsReader(), [], []
    for frames in read_batches(capture, 4096):
        p = decode(frames)
        packets.append(p)
        dns += reader.read(frames, p)
    return connection_records(PacketBatch.concat(packets)), dns


def test_the_records_come_back_as_they_were_kept_and_teach_a_new_sink(tmp_path: Path) -> None:
    connections, dns = learned_from(SAMPLE)
    assert len(connections) > 100 and len(dns) > 100
    save_learned(tmp_path, "abc", connections, dns)
    path = tmp_path / LEARNED_DIR / "abc.json"
    assert path.stat().st_mode & 0o777 == 0o600  # the network's addresses: owner only
    assert load_learned(tmp_path, "abc") == (connections, dns)
    assert load_learned(tmp_path, "another model") is None
    sink = EventSink(None, conns=ConnFeed())
    assert sink.behaviour is not None and not sink.behaviour.detectors.scans.learned
    SessionMemory(tmp_path, "abc").restore(None, sink)
    assert sink.behaviour.detectors.scans.learned


@pytest.mark.parametrize("damage", [b"", b"{not json", b'{"connections": [{"ts": 1}], "dns": []}',
                                    b'{"dns": []}'])
def test_a_damaged_file_is_logged_and_ignored(tmp_path: Path, damage: bytes,
                                              caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / LEARNED_DIR).mkdir()
    path = tmp_path / LEARNED_DIR / "abc.json"
    path.write_bytes(damage)
    with caplog.at_level(logging.WARNING):
        assert load_learned(tmp_path, "abc") is None
    assert f"learned normal not restored: {path} is unreadable" in caplog.text
