"""While netids learns a network, a scanner's or guesser's packets flagged by their
connections' evidence stay alerted, as the behaviour events themselves are."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from netids.capture.pcapfile import read_batches
from netids.config import PROJECT_ROOT
from netids.detect.packet_behaviour import StreamBehaviour
from netids.detect.pipeline import Pipeline
from netids.training.checkpoint import load_detector
from netids.training.in_place import hold


def test_guessing_packets_flagged_by_behaviour_are_alerted_while_learning(
        shared_data: Path) -> None:
    pipeline = Pipeline(load_detector(PROJECT_ROOT / "models" / "default.pt"))
    behaviour = StreamBehaviour()
    flagged = kept = 0
    for frames in read_batches(shared_data / "attack" / "zeek__sshguess.pcap", 64):
        scored, _ = behaviour.rescore(pipeline.process(frames))
        alerted, out = hold(scored)
        assert alerted.all()  # "brute force": nothing held back
        flagged += int(scored.anomalous.sum())
        kept += int(np.count_nonzero(out.anomalous))
    assert flagged == kept > 0
