"""A sensor that just started asks for more evidence: its first seconds are discounted."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from netids.capture.pcapfile import read_batches
from netids.detect.detector import Detector
from netids.detect.pipeline import Pipeline
from netids.detect.warmup import WARMUP_NINES, WARMUP_SECONDS, warmup_discount
from netids.training.checkpoint import load


@pytest.fixture(scope="module")
def detector(trained_model: Path) -> Detector:
    return Detector(load(trained_model))


def judged(detector: Detector, path: Path, warm: bool) -> tuple[np.ndarray, np.ndarray,
                                                                 np.ndarray, float]:
    """(packet times, nines, flags, stream start) of a capture scored from a cold start."""
    pipeline = Pipeline(detector, warmup=warm)
    ts, nines, flags = [], [], []
    for frames in read_batches(path, 4096):
        _, packets, features = pipeline.featurise(frames)
        v = pipeline.judge(packets, features, 1.0, pipeline.started)
        ts.append(packets.ts)
        nines.append(v.nines)
        flags.append(v.anomalous)
    return (np.concatenate(ts), np.concatenate(nines), np.concatenate(flags),
            pipeline.context.started)


def test_only_a_live_sensor_or_a_judge_who_asks_discounts_the_first_seconds(detector) -> None:
    assert Pipeline(detector).started is None  # score, evaluate: from the first packet
    warm = Pipeline(detector, warmup=True)
    assert warm.started is None  # no packet yet


def test_the_first_seconds_of_a_stream_need_more_evidence(detector, shared_data):
    """On a real capture read from a cold start, the score of a packet in the first 10 s is
    lowered by up to 3 nines, the more the nearer the start; later packets score as they
    would without the warm-up, and nothing is flagged that would not have been."""
    path = shared_data / "benign" / "zeek__ssh.pcap"
    ts, cold, cold_flags, started = judged(detector, path, warm=False)
    _, warm, warm_flags, _ = judged(detector, path, warm=True)
    early = ts - started < WARMUP_SECONDS
    assert early.sum() > 40 and (~early).sum() > 1000
    expected = np.maximum(cold - WARMUP_NINES * (1 - (ts - started) / WARMUP_SECONDS), 0.0)
    np.testing.assert_allclose(warm[early], expected[early], atol=1e-9)
    assert np.array_equal(warm[~early], cold[~early])
    assert not (warm_flags & ~cold_flags).any()


def test_a_flood_from_the_first_packet_is_still_flagged(detector, shared_data):
    path = shared_data / "attack" / "stopddos__pkt.TCP.synflood.spoofed.pcap"
    ts, _, flags, started = judged(detector, path, warm=True)
    early = ts - started < WARMUP_SECONDS
    assert early.sum() > 1000 and flags[early].mean() > 0.95


def test_no_discount_without_a_known_start_or_past_the_warm_up():
    assert warmup_discount(np.array([5.0]), None) is None
    assert warmup_discount(np.array([], dtype=float), 0.0) is None
    assert warmup_discount(np.array([WARMUP_SECONDS]), 0.0) is None
    assert warmup_discount(np.array([0.0, WARMUP_SECONDS + 5]), 0.0).tolist() == [WARMUP_NINES,
                                                                                 0.0]
