"""The threshold follows the network, within bounds, and an attack cannot teach itself normal."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from netids.capture.pcapfile import read_batches
from netids.detect.adaptive import AdaptConfig, ThresholdAdapter
from netids.detect.pipeline import Pipeline
from netids.training.checkpoint import load_detector

QUICK = AdaptConfig(warmup=0.0, min_samples=100)


def feed(adapter: ThresholdAdapter, seconds: int, factor: float, flagged: float = 0.0,
         seed: int = 0) -> None:
    """``seconds`` of a network whose raw errors are ``factor`` times the trained ones (0.99
    quantile 1.0 at factor 1), 20 packets a second, ``flagged`` of them anomalous."""
    rng = np.random.default_rng(seed)
    for t in range(0, seconds, 10):
        raw = factor * rng.lognormal(size=200) / np.exp(2.33)
        hosts = rng.integers(1, 50, size=200).astype(np.uint64)
        adapter.observe(t + np.arange(200) / 20, raw, rng.random(200) < flagged, hosts,
                        hosts + np.uint64(100))


def test_the_threshold_rises_to_a_noisier_network_at_a_bounded_pace() -> None:
    adapter = ThresholdAdapter(anchor=1.0, config=QUICK)
    feed(adapter, 3600, factor=20.0)
    assert 1.9 < adapter.scale <= 2.0  # wants 20x: at most 2x in the first hour
    feed(adapter, 4 * 3600, factor=20.0)
    assert adapter.scale == QUICK.max_scale  # never past 8x the trained raw error
    assert "packets learned" in adapter.summary()


def test_a_quieter_network_never_makes_the_threshold_more_sensitive() -> None:
    adapter = ThresholdAdapter(anchor=1.0, config=QUICK)
    feed(adapter, 3600, factor=0.1)
    assert adapter.scale == 1.0 and adapter.summary() == ""


def test_a_stream_flagging_many_packets_teaches_nothing() -> None:
    """The guard: batches flagging over 2 % (a flood, a scan) freeze learning, and hosts with
    flagged packets are not learned from."""
    adapter = ThresholdAdapter(anchor=1.0, config=QUICK)
    feed(adapter, 3600, factor=20.0, flagged=0.05)
    assert adapter.scale == 1.0 and adapter.learned == 0
    quiet = ThresholdAdapter(anchor=1.0, config=QUICK)
    hosts = np.full(200, 7, np.uint64)
    flags = np.zeros(200, bool)
    flags[0] = True  # one flagged packet of host 7 makes every packet of it unlearnable
    quiet.observe(np.arange(200) / 20, np.full(200, 5.0), flags, hosts, hosts + np.uint64(1))
    assert quiet.learned == 0


def test_a_flood_of_spoofed_sources_keeps_the_hot_set_bounded_and_learning_frozen() -> None:
    """Each flagged spoofed source is a new hot host: the set keeps the most recent
    ``max_hot``, and learning stays frozen until the flood has been over for ``hot_window``."""
    config = AdaptConfig(warmup=0.0, min_samples=100, max_hot=500, max_flag_share=1.0)
    adapter = ThresholdAdapter(anchor=1.0, config=config)
    rng = np.random.default_rng(1)
    for t in range(100):  # 100 s of 400 flagged packets a second from new sources
        sources = rng.integers(1, 2**63, size=400).astype(np.uint64)
        adapter.observe(t + np.arange(400) / 400, np.full(400, 5.0), np.ones(400, bool),
                        sources, np.full(400, 9, np.uint64))
        assert len(adapter._hot) <= 500
    assert adapter.learned == 0
    hosts = np.full(200, 3, np.uint64)
    clean = np.zeros(200, bool)
    adapter.observe(130 + np.arange(200) / 200, np.ones(200), clean, hosts, hosts)
    assert adapter.learned == 0  # within hot_window of the last overflow
    adapter.observe(170 + np.arange(200) / 200, np.ones(200), clean, hosts, hosts)
    assert adapter.learned == 200


def test_a_batch_judged_ahead_gets_the_scale_it_gets_judged_in_turn() -> None:
    adapter = ThresholdAdapter(anchor=1.0, config=AdaptConfig(warmup=0.0, min_samples=100,
                                                              lag=2))
    feed(adapter, 3600, factor=20.0)
    n = adapter.observed
    assert adapter.scale_for(n + 2) == adapter.scale  # the latest refit, lag batches on
    assert adapter.scale_for(n + 1) <= adapter.scale and adapter.scale_for(1) == 1.0


def test_on_the_dev_mix_the_threshold_adapts_without_losing_attacks(shared_data: Path) -> None:
    """The shipped model on the dev mix (40 min, attacks in it): the calibration follows its
    clean traffic, flags fewer normal packets, and every attack kind stays flagged."""
    detector = load_detector(Path("models/default.pt"))
    labels = np.genfromtxt(shared_data / "mixed_dev.labels.csv", delimiter=",", names=True,
                           dtype=None, encoding="utf-8", usecols=("label", "attack_kind"))
    attack = labels["label"] == 1
    runs = {}
    for adapt in (False, True):
        pipeline = Pipeline(detector, adapt=adapt)
        flags = np.concatenate([pipeline.process(f).anomalous
                                for f in read_batches(shared_data / "mixed_dev.pcap", 4096)])
        runs[adapt] = (flags, pipeline)
    fixed, adapted = runs[False][0], runs[True][0]
    adapter = runs[True][1].adapter
    assert adapter is not None and adapter.scale > 1.0 and adapter.learned > 5_000
    assert (adapted & ~attack).sum() < (fixed & ~attack).sum()
    assert (adapted & attack).sum() >= 0.97 * (fixed & attack).sum()
    for kind in {str(k) for k in labels["attack_kind"][fixed & attack]}:
        assert (adapted & attack & (labels["attack_kind"] == kind)).any(), kind
