"""Progress through capture files: bytes estimated from packets, share, rate and time left."""

from __future__ import annotations

from pathlib import Path

import pytest

from netids.capture.files import FileProgress
from netids.capture.pcapfile import read_batches
from netids.capture.progress import Meter, Snapshot


@pytest.mark.parametrize("name", ["attack/pcaphunt__hs-tcp_synPingSweepRand.pcapng",
                                  "attack/stopddos__amp.UDP.snmp.src161.pcapng",
                                  "benign/zeek__smb2.pcap", "attack/pcaphunt__ps-udp.pcap"])
def test_the_packets_read_account_for_the_file_size(shared_data: Path, name: str) -> None:
    path = shared_data / name
    clock = iter(range(1000)).__next__
    progress = FileProgress([path], clock=lambda: float(clock()))
    count = progress.counter(path)
    shares = []
    for frames in read_batches(path, 512):
        count(frames)
        shares.append(progress.snapshot().fraction)
    size = path.stat().st_size
    assert shares == sorted(shares) and shares[-1] <= 0.999
    # pcap: exact but for the file header; pcapng: block padding and options are not counted
    assert size * 0.9 <= progress.meter.work <= size


def test_rate_and_time_left_follow_the_average_pace() -> None:
    meter = Meter(total=1000, started=10.0)
    assert meter.snapshot(10.0).seconds_left is None  # nothing done: no guess
    meter.advance(packets=50, work=100)
    assert meter.snapshot(10.2).seconds_left is None  # too early to tell
    s = meter.snapshot(12.0)
    assert (s.fraction, s.rate, s.seconds_left) == (0.1, 25.0, 18.0)
    meter.advance(packets=450, work=900)
    assert meter.snapshot(14.0).fraction == 0.999  # only finish() claims the end
    meter.finish()
    done = meter.snapshot(14.0)
    assert (done.fraction, done.seconds_left) == (1.0, 0.0)
    assert done.describe() == "500 packets · 100% · 125 packets/s"


def test_an_unknown_total_shows_count_and_rate_only() -> None:
    s = Snapshot(count=12_000, work=0, total=None, elapsed=2.0)
    assert (s.fraction, s.seconds_left) == (None, None)
    assert s.describe() == "12,000 packets · 6,000 packets/s"
    assert s.bar(6) == "[....]"
