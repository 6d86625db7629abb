"""Mixing normal and attack captures into one labelled evaluation capture."""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np
import pytest

from netids.capture.pcapfile import read_batches
from netids.commands import CommandError
from netids.commands import mix as mix_command
from netids.config import Settings
from netids.lab.mixing import AttackSource, mix, read_labels


@pytest.fixture
def benign(shared_data: Path) -> list[Path]:
    return [shared_data / "benign" / "zeek__wikipedia.pcap",
            shared_data / "benign" / "iotlab__schlage-lock-01.pcap"]


@pytest.fixture
def synscan(shared_data: Path) -> Path:
    return shared_data / "attack" / "sanders__synscan.pcapng"  # has synscan.labels.csv beside it


@pytest.fixture
def teardrop(shared_data: Path) -> Path:
    return shared_data / "attack" / "wireshark__teardrop.pcap"  # 2 attack packets among 17


def _count(path: Path) -> int:
    return sum(len(b) for b in read_batches(path))


def _ts(path: Path) -> np.ndarray:
    return np.concatenate([b.ts for b in read_batches(path)])


def test_mix_keeps_every_packet_in_time_order_with_one_label_row_each(tmp_path, benign, synscan,
                                                                      teardrop):
    out, labels = tmp_path / "mix.pcap", tmp_path / "mix.labels.csv"
    report = mix(benign, [AttackSource(synscan, max_packets=300), AttackSource(teardrop)],
                 out, labels, seed=3)
    expected = sum(_count(p) for p in benign) + 300 + 17
    assert report.packets == expected == _count(out)
    ts = _ts(out)
    assert np.all(np.diff(ts) >= 0)
    index, label, kinds = read_labels(labels)
    assert index.tolist() == list(range(expected))
    assert report.attack_packets == int(label.sum()) == 300 + 2
    assert report.by_kind == {"port_scan": 300, "malformed_teardrop": 2}
    assert {k for k, lab in zip(kinds, label, strict=True) if lab} == set(report.by_kind)
    with labels.open() as fh:
        assert next(csv.reader(fh))[:4] == ["index", "timestamp", "label", "attack_kind"]


def test_attacks_are_retimed_inside_the_normal_timeline(tmp_path, benign, synscan):
    out, labels = tmp_path / "mix.pcap", tmp_path / "mix.labels.csv"
    report = mix(benign, [AttackSource(synscan, max_packets=200)], out, labels, seed=1)
    _, label, _ = read_labels(labels)
    ts = _ts(out)
    attack = ts[label == 1]
    normal = ts[label == 0]
    assert normal.min() <= attack.min() and attack.max() <= normal.max()
    assert np.diff(normal).max() <= 10.0 + 1e-6  # idle gaps shortened to max_gap
    assert report.placements[0]["packets"] == 200


def test_normal_part_takes_a_fraction_of_each_capture(tmp_path, benign):
    out, labels = tmp_path / "tail.pcap", tmp_path / "tail.labels.csv"
    report = mix(benign, [], out, labels, normal_part=(0.7, 1.0))
    assert report.packets == sum(_count(p) - round(0.7 * _count(p)) for p in benign)
    assert report.attack_packets == 0


def test_attack_without_labels_file_takes_the_given_kind(tmp_path, benign, synscan):
    plain = tmp_path / "scan.pcap"
    plain.write_bytes(synscan.read_bytes())  # pcapng bytes; the reader goes by magic number
    report = mix(benign[:1], [AttackSource(plain, kind="custom", max_packets=50)],
                 tmp_path / "m.pcap", tmp_path / "m.labels.csv")
    assert report.by_kind == {"custom": 50}


def test_mix_command(tmp_path, capsys, benign, teardrop):
    parser = argparse.ArgumentParser()
    mix_command.add_parser(parser.add_subparsers(dest="command"), "mix")
    out = tmp_path / "new" / "dir" / "eval.pcap"  # the README's build/eval/ need not exist yet
    args = parser.parse_args(["mix", "--normal", *map(str, benign), "--attack", str(teardrop),
                              "--out", str(out), "--normal-part", "0.5:1"])
    assert mix_command.run(args, Settings()) == 0
    assert out.is_file() and (out.parent / "eval.labels.csv").is_file()
    assert "malformed_teardrop=2" in capsys.readouterr().out
    bad = parser.parse_args(["mix", "--normal", "/nonexistent.pcap", "--out", str(out)])
    with pytest.raises(CommandError, match="not found"):
        mix_command.run(bad, Settings())
    (tmp_path / "file").write_text("")
    blocked = parser.parse_args(["mix", "--normal", str(benign[0]),
                                 "--out", str(tmp_path / "file" / "eval.pcap")])
    with pytest.raises(CommandError, match="cannot write"):
        mix_command.run(blocked, Settings())
