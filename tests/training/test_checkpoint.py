"""Checkpoints: round trip, damaged files, other versions, atomic writes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from netids.config import PROJECT_ROOT
from netids.detect.context import FEATURE_NAMES
from netids.detect.detector import Detector
from netids.training.checkpoint import FORMAT_VERSION, CheckpointError, load, load_detector, save
from netids.training.data import read_capture
from netids.training.train import TrainConfig, train

CAPTURE = "benign/iotlab__lockly-hub-01.pcap"  # in the shared data


@pytest.fixture(scope="module")
def report(shared_data):
    packets, feats = read_capture(shared_data / CAPTURE)
    return train([(packets.take(slice(0, 12000)), feats[:12000])],
                 TrainConfig(epochs=1, max_train_windows=300, threads=2))


@pytest.fixture(scope="module")
def fresh(shared_data):
    packets, feats = read_capture(shared_data / CAPTURE)
    return packets.take(slice(30000, 32000)), feats[30000:32000]


def test_round_trip_scores_the_same(report, fresh, tmp_path):
    path = save(report.checkpoint, tmp_path / "m.pt")
    before = Detector(report.checkpoint).score_batch(*fresh)
    after = load_detector(path, threads=1)
    np.testing.assert_array_equal(after.score_batch(*fresh).scores, before.scores)
    assert after.threshold == report.checkpoint.threshold
    assert after.checkpoint.combiner.range_weight == report.checkpoint.combiner.range_weight > 0
    meta = after.checkpoint.metadata
    assert meta["packets"] == 12000 and meta["time_span"]["seconds"] > 0
    assert after.feature_names == FEATURE_NAMES
    assert "best_val_loss" in meta["metrics"]


def test_missing_file_is_a_plain_error(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_detector(tmp_path / "nope.pt", threads=1)


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_corrupt_file_is_a_plain_error(report, tmp_path, damage):
    path = save(report.checkpoint, tmp_path / "m.pt")
    data = path.read_bytes()
    path.write_bytes({"truncate": data[: len(data) // 2], "garbage": os.urandom(4096),
                      "empty": b""}[damage])
    with pytest.raises(CheckpointError, match="corrupt or truncated|not a netids"):
        load(path)


def test_other_torch_file_is_not_taken_for_a_model(tmp_path):
    path = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(3)}, path)
    with pytest.raises(CheckpointError, match="not a netids model"):
        load(path)


def test_wrong_version_says_to_retrain(report, tmp_path):
    path = save(report.checkpoint, tmp_path / "m.pt")
    payload = torch.load(path, weights_only=True)
    payload["version"] = FORMAT_VERSION + 1
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match="version .* retrain"):
        load(path)


def test_a_checkpoint_from_before_the_range_term_scores_without_it(report, fresh, tmp_path):
    path = save(report.checkpoint, tmp_path / "m.pt")
    payload = torch.load(path, weights_only=True)
    del payload["combiner"]["range_weight"]  # as format 4 wrote it until then
    torch.save(payload, path)
    old = load_detector(path)
    assert old.checkpoint.combiner.range_weight == 0.0
    packets, feats = fresh
    feats = feats.copy()
    feats[:10, old.feature_names.index("src_syn_rate_1s")] = 1e5  # far past the training range
    _, excess = old.input_errors(packets, feats)
    raw = old.score_batch(packets, feats).raw
    new = Detector(report.checkpoint).score_batch(packets, feats).raw
    np.testing.assert_allclose(raw[excess == 0], new[excess == 0], rtol=1e-6)
    assert np.all(raw[:10] < new[:10])


def test_incompatible_weights_are_a_plain_error(report, tmp_path):
    path = save(report.checkpoint, tmp_path / "m.pt")
    payload = torch.load(path, weights_only=True)
    payload["config"]["d_model"] = 64
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match="weights do not fit"):
        load_detector(path, threads=1)


SAVER = """
import sys, torch
from netids.training.checkpoint import load, save
ckpt = load(sys.argv[1])
ckpt.metadata["ballast"] = torch.randn(4_000_000)  # ~16 MB: a save takes a while
print("ready", flush=True)
while True:
    save(ckpt, sys.argv[2])
"""


def test_killed_mid_save_leaves_no_half_file(report, tmp_path):
    source = save(report.checkpoint, tmp_path / "source.pt")
    target = tmp_path / "models" / "default.pt"
    proc = subprocess.Popen([sys.executable, "-c", SAVER, str(source), str(target)],
                            cwd=PROJECT_ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        deadline = time.monotonic() + 60
        while not target.exists():  # the first save completed
            assert time.monotonic() < deadline, "the saver never finished a save"
            time.sleep(0.001)
        first = target.stat().st_mtime_ns
        while not list(target.parent.glob(".default.pt.*.tmp")):  # the next one is under way
            assert time.monotonic() < deadline, "the saver never started a second save"
            time.sleep(0.0005)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    # the target is the last complete save, whole and loadable; only a temp file is partial
    assert target.stat().st_mtime_ns >= first
    assert load(target).metadata["packets"] == 12000
