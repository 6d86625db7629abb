"""Training in a child process: the epochs come back as they end, the checkpoint is saved and
marked as trained here, a refusal is the child's own sentence, a cancel ends the child."""

from __future__ import annotations

import threading
from dataclasses import replace
from pathlib import Path

import pytest

from netids.parallel.procs import processes
from netids.training.background import train_in_process
from netids.training.checkpoint import load_detector, read_metadata
from netids.training.data import read_capture
from netids.training.train import TrainConfig, TrainingCancelled, TrainingError
from tests.support import SAMPLE, small_pcap

# these tests check the child's plumbing, not the model's quality: a small model trains fast
TINY = TrainConfig(d_model=16, n_layer=1, max_train_windows=200)


def children() -> set[int]:
    import os

    return {p.pid for p in processes() if p.ppid == os.getpid() and p.alive
            and "netids.training.background" in p.cmd}


def test_a_model_is_trained_in_a_child_process(tmp_path: Path) -> None:
    data = read_capture(small_pcap(tmp_path / "n.pcap", 10_000))
    epochs: list[int] = []
    out = tmp_path / "m.pt"
    report, metadata = train_in_process(data, out, replace(TINY, epochs=2), "n.pcap", "learning",
                                        lambda e, *_: epochs.append(e), threading.Event())
    assert epochs == [1, 2]
    assert report.startswith("trained on 10,000 packets")
    assert metadata["trained_here"] == "learning" and metadata["packets"] == 10_000
    assert read_metadata(out)["trained_here"] == "learning"  # in the file: no database needed
    assert load_detector(out).threshold == metadata["threshold"]
    assert not children()


def test_a_refusal_is_the_childs_sentence(tmp_path: Path) -> None:
    data = read_capture(small_pcap(tmp_path / "n.pcap", 2000))
    with pytest.raises(TrainingError, match="too little normal traffic: 2000 packets"):
        train_in_process(data, tmp_path / "m.pt", replace(TINY, epochs=1), "n", "learning",
                         lambda *_: None, threading.Event())
    assert not (tmp_path / "m.pt").exists() and not children()


def test_cancelling_ends_the_child(tmp_path: Path) -> None:
    data = read_capture(SAMPLE)
    cancel = threading.Event()

    def progress(epoch: int, *_: float) -> None:
        cancel.set()  # after the first epoch

    with pytest.raises(TrainingCancelled):
        train_in_process(data, tmp_path / "m.pt", replace(TINY, epochs=200), "s", "learning",
                         progress, cancel)
    assert not (tmp_path / "m.pt").exists() and not children()
