"""Training: a small model on a real capture, calibrated on fresh traffic; limits and controls."""

from __future__ import annotations

import argparse
import threading

import numpy as np
import pytest

from netids.commands import CommandError
from netids.commands import train as train_command
from netids.config import Settings
from netids.detect.context import FEATURE_NAMES
from netids.detect.detector import Detector
from netids.training.checkpoint import load
from netids.training.data import cold_starts, read_capture
from netids.training.train import MIN_PACKETS, TrainConfig, TrainingCancelled, TrainingError, train

CAPTURE = "benign/iotlab__lockly-hub-01.pcap"  # shared data: 46,656 packets of a smart-lock hub

# Calibration promise, checked on traffic the model never saw: for threshold t the share of
# fresh normal packets scoring above t is within CALIBRATION_TOLERANCE * (1 - t) of 1 - t.
CALIBRATION_TOLERANCE = 0.5


@pytest.fixture(scope="module")
def capture(shared_data):
    return read_capture(shared_data / CAPTURE)


def test_small_model_trains_and_is_calibrated_on_fresh_traffic(capture):
    packets, feats = capture
    cut = int(len(packets) * 0.6)  # train on the first 60%, the rest is fresh
    epochs = []
    report = train([(packets.take(slice(0, cut)), feats[:cut])],
                   TrainConfig(epochs=8, max_train_windows=4000, threads=2),
                   progress=lambda epoch, tl, vl: epochs.append((epoch, tl, vl)))
    assert [e for e, _, _ in epochs] == list(range(1, report.epochs + 1))
    assert epochs[-1][2] < epochs[0][2]  # validation loss went down

    scores = Detector(report.checkpoint, threads=2).score_batch(
        packets.take(slice(cut, None)), feats[cut:]).scores
    for t in (0.9, 0.99):
        share = float((scores > t).mean())
        assert abs(share - (1 - t)) <= CALIBRATION_TOLERANCE * (1 - t), (t, share)


def test_cold_starts_featurise_stretches_inside_a_capture_from_a_fresh_context(capture):
    packets, feats = capture
    starts = cold_starts(packets, count=3, warmup=60.0)
    assert len(starts) == 3
    new_macs = FEATURE_NAMES.index("link_new_mac_rate_100s")
    firsts = []
    for part, part_feats in starts:
        first = int(np.flatnonzero(packets.ts == part.ts[0])[0])
        firsts.append(first)
        assert 0 < first < len(packets)
        assert part.ts[-1] - part.ts[0] <= 60.0
        assert len(part_feats) == len(part)
        # the first packet meets its MAC for the first time, unlike the same packet read
        # with the whole capture's history behind it
        assert part_feats[0, new_macs] > 0 and feats[first, new_macs] < part_feats[0, new_macs]
    assert firsts == sorted(firsts) and len(set(firsts)) == 3


def test_training_also_learns_a_sensor_s_start_inside_the_capture(capture):
    packets, feats = capture
    cut = MIN_PACKETS * 2
    config = TrainConfig(epochs=1, max_train_windows=200, threads=2, cold_starts=4)
    with_starts = train([(packets.take(slice(0, cut)), feats[:cut])], config)
    without = train([(packets.take(slice(0, cut)), feats[:cut])],
                    TrainConfig(epochs=1, max_train_windows=200, threads=2))
    added = sum(len(p) for p, _ in cold_starts(packets.take(slice(0, cut)), 4, 60.0))
    meta = with_starts.checkpoint.metadata
    assert meta["packets"] == without.checkpoint.metadata["packets"] == cut
    assert meta["cold_start_packets"] == added > 0
    assert without.checkpoint.metadata["cold_start_packets"] == 0


def test_too_little_traffic_says_how_much_is_needed(capture):
    packets, feats = capture
    with pytest.raises(TrainingError, match=f"at least {MIN_PACKETS}"):
        train([(packets.take(slice(0, 500)), feats[:500])])


def test_cancel_stops_training(capture):
    packets, feats = capture
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(TrainingCancelled):
        train([(packets.take(slice(0, 10000)), feats[:10000])], TrainConfig(epochs=2),
              cancel=cancel)


def test_same_seed_same_model(capture):
    packets, feats = capture
    data = [(packets.take(slice(0, 9000)), feats[:9000])]
    config = TrainConfig(epochs=1, max_train_windows=200, threads=1, seed=7)
    a, b = train(data, config), train(data, config)
    assert a.history[0]["val_loss"] == b.history[0]["val_loss"]


def _args(**kw):
    parser = argparse.ArgumentParser()
    train_command.add_parser(parser.add_subparsers(dest="command"), "train")
    return parser.parse_args(["train", *kw.pop("argv")])


def test_train_command_writes_a_checkpoint_with_metadata(tmp_path, capsys, shared_data):
    path = shared_data / CAPTURE
    out = tmp_path / "models" / "lab.pt"
    assert train_command.run(_args(argv=[str(path), "--out", str(out), "--epochs", "1",
                                         "--part", "0:0.3"]), Settings()) == 0
    meta = load(out).metadata
    assert meta["part"] == [0.0, 0.3] and meta["sources"] == [str(path.resolve())]
    assert meta["packets"] == round(0.3 * 46656)
    said = capsys.readouterr().out
    assert "wrote" in said
    assert out.stat().st_size < 5_000_000
    assert meta["hosts"] >= 1 and sum(meta["protocols"].values()) == meta["packets"]
    # 14,000 packets, one epoch: the model is not to be trusted, and the command says why
    assert "warning: little traffic: trained on only 13,997 packets" in said
    assert "warning: unstable calibration" in said


def test_train_command_errors_are_one_line(tmp_path, shared_data):
    with pytest.raises(CommandError, match="not found"):
        train_command.run(_args(argv=["/nonexistent.pcap", "--out", str(tmp_path / "m.pt")]),
                          Settings())
    with pytest.raises(CommandError, match="at least"):
        train_command.run(_args(argv=[str(shared_data / "benign" / "sanders__dns.pcap"),
                                      "--out", str(tmp_path / "m.pt")]), Settings())
    assert not (tmp_path / "m.pt").exists()
    np.testing.assert_equal(MIN_PACKETS, 8000)
