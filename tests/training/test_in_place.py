"""Learning in place, the pure part: which flags are alerted while learning, what is kept to
train on, and when it is ready; on the shipped model's verdicts for the bundled sample (a host
sweep, a port scan, a SYN flood and ARP spoofing in lab traffic)."""

from __future__ import annotations

import dataclasses
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from netids.capture.pcapfile import read_batches
from netids.detect.dns import DnsRecord
from netids.detect.packets import parse_ip
from netids.detect.pipeline import Pipeline
from netids.detect.scored import ScoredBatch
from netids.training.checkpoint import load_detector
from netids.training.in_place import (
    ALERTED_KINDS,
    LearnConfig,
    Learner,
    LearningState,
    address_keys,
    hold,
)
from tests.support import SAMPLE

SCANNER = parse_ip("10.77.0.66")  # sweeps, scans and SYN-floods in the sample


@pytest.fixture(scope="module")
def scored_sample(trained_model: Path) -> list[ScoredBatch]:
    pipeline = Pipeline(load_detector(trained_model))
    return [pipeline.process(b, 1.0) for b in read_batches(SAMPLE, 4096)]


def learn(batches: list[ScoredBatch], config: LearnConfig | None = None
          ) -> tuple[Learner, list[ScoredBatch]]:
    config = config or LearnConfig()
    state = LearningState("learning", config.seconds, started=0.0)
    learner = Learner(state, config)
    return learner, [learner.observe(b) for b in batches]


def test_while_learning_only_kinds_that_do_not_depend_on_the_network_stay_anomalous(
        scored_sample: list[ScoredBatch]) -> None:
    learner, out = learn(scored_sample)
    before = Counter(k for b in scored_sample for k in b.kinds)
    after = Counter(k for b in out for k in b.kinds)
    assert set(after) == set(before) & ALERTED_KINDS
    assert {"port scan", "flood", "ARP spoofing", "host sweep"} <= set(after)
    held = {k: n for k, n in before.items() if k not in ALERTED_KINDS}
    assert held["unusual flags"] > 100 and "target under flood" in held
    assert learner.state.held == held  # counted, by kind
    assert learner.state.alerted == sum(after.values())
    for b, o in zip(scored_sample, out, strict=True):
        assert np.array_equal(b.scores, o.scores)  # scores stay: only the alerts are held
        assert o.anomalous.sum() == len(o.kinds) == len(o.explanations)
        assert set(np.flatnonzero(o.anomalous)) <= set(np.flatnonzero(b.anomalous))


def test_hold_leaves_a_batch_of_alerted_kinds_alone(scored_sample: list[ScoredBatch]) -> None:
    batch = next(b for b in scored_sample if b.kinds)
    alerted, out = hold(batch)
    assert len(alerted) == len(batch.kinds)
    if alerted.all():
        assert out is batch


def test_the_attackers_traffic_around_its_alerts_is_not_learned(
        scored_sample: list[ScoredBatch]) -> None:
    learner, _ = learn(scored_sample)
    s = learner.state
    total = sum(len(b) for b in scored_sample)
    assert s.packets == total
    assert s.kept == total - s.alerted  # every packet but the alerted ones, at first
    assert s.hosts == len({(int(h), int(lo)) for b in scored_sample
                           for h, lo, v in zip(b.packets.src_hi, b.packets.src_lo,
                                               b.packets.ip_version, strict=True) if v > 0}
                          | {(int(h), int(lo)) for b in scored_sample
                             for h, lo, v in zip(b.packets.dst_hi, b.packets.dst_lo,
                                                 b.packets.ip_version, strict=True) if v > 0})
    packets, features = learner.data()
    assert len(packets) == len(features) < s.kept
    scanner = address_keys(np.array([SCANNER[0]], np.uint64), np.array([SCANNER[1]], np.uint64))
    keys = np.concatenate([address_keys(packets.src_hi, packets.src_lo),
                           address_keys(packets.dst_hi, packets.dst_lo)])
    assert not np.isin(keys, scanner).any(), "nothing from or to the scanner is learned"
    assert s.excluded == s.kept - len(packets)  # and learning waits for as many more
    assert not Learner(s, LearnConfig(seconds=0.0, min_packets=s.kept - s.excluded + 1)
                       ).ready(1.0)


def test_learning_is_ready_after_its_time_with_enough_packets_kept(
        scored_sample: list[ScoredBatch]) -> None:
    learner, _ = learn(scored_sample, LearnConfig(seconds=60.0))
    assert not learner.ready(59.0)
    assert learner.ready(60.0)
    thin, _ = learn(scored_sample[:1], LearnConfig(seconds=60.0))
    assert thin.state.kept < 8000 and not thin.ready(3600.0)  # waits for enough packets
    assert "more packets to train on" in thin.state.progress_text(3600.0)


def test_what_is_kept_is_bounded(scored_sample: list[ScoredBatch]) -> None:
    learner, _ = learn(scored_sample, LearnConfig(max_packets=5000))
    assert learner.state.kept == 5000
    assert learner.state.packets == sum(len(b) for b in scored_sample)  # all still counted


def test_once_learning_ends_nothing_is_held(scored_sample: list[ScoredBatch]) -> None:
    learner, _ = learn(scored_sample[:1])
    learner.state.phase = "done"
    batch = next(b for b in scored_sample if "unusual flags" in b.kinds)
    assert learner.observe(batch) is batch


def test_the_dns_of_the_kept_traffic_is_kept_for_the_dns_detectors_but_a_suspects(
        scored_sample: list[ScoredBatch]) -> None:
    """The DNS detectors learn from what learning kept: the sample's four clients' queries
    and answers; not a query the scanner makes while it scans, nor one on a packet alerted
    (both added to the batch where the alerts are)."""
    i = next(i for i, b in enumerate(scored_sample) if any(k in ALERTED_KINDS for k in b.kinds))
    batch = scored_sample[i]
    loud = int(batch.anomaly_index[[k in ALERTED_KINDS for k in batch.kinds]][0])
    quiet = int(np.flatnonzero(~batch.anomalous[loud:])[0]) + loud  # kept, after an alert
    template = next(r for b in scored_sample for r in b.dns)

    def asked(row: int, client: str, name: str) -> DnsRecord:
        return dataclasses.replace(template, client=client, ts=float(batch.packets.ts[row]),
                                   index=batch.frames.first_index + row, name=name)

    batches = list(scored_sample)
    added = (asked(quiet, "10.77.0.66", "evil.test"), asked(loud, "10.77.0.21", "alerted.test"))
    batches[i] = dataclasses.replace(batch, dns=(*batch.dns, *added))
    records = learn(batches)[0].dns_records()
    assert len(records) > 100
    assert {r.client for r in records} == {"10.77.0.21", "10.77.0.22", "10.77.0.23",
                                           "10.77.0.24"}
    names = {r.name for r in records}
    assert "www.lab.test" in names and not names & {"evil.test", "alerted.test"}
