"""Connections of a shed stream: under overload the tracker still sees every decoded packet
while at least ConnFeed.full_share is scored; below that, and what deep overload leaves
undecoded, is counted as missed."""

from __future__ import annotations

from pathlib import Path

from netids.capture.pcapfile import read_batches
from netids.detect.conn_records import ConnRecord
from netids.detect.pipeline import Pipeline
from netids.detect.tracking import ConnFeed
from netids.training.checkpoint import load_detector
from tests.support import SAMPLE


def records(model: Path, share: float, decode_shed: bool = True) -> tuple[list[ConnRecord],
                                                                          ConnFeed, Pipeline]:
    """The bundled capture through the pipeline at ``share``, connections followed."""
    pipeline = Pipeline(load_detector(model))
    feed = ConnFeed()
    out: list[ConnRecord] = []
    for frames in read_batches(SAMPLE, 4096):
        out += feed.update(pipeline.process(frames, share, decode_shed=decode_shed))
    return out + feed.flush(), feed, pipeline


def summary(rs: list[ConnRecord]) -> list[tuple]:
    """What a record says, its uid aside (uids number connections in order of creation)."""
    return sorted((r.ts, r.orig_h, r.orig_p, r.resp_h, r.resp_p, r.proto, r.conn_state,
                   r.history or "", r.orig_pkts, r.resp_pkts, r.orig_bytes or 0,
                   r.resp_bytes or 0) for r in rs)


def test_shed_packets_still_count_in_their_connections(trained_model: Path) -> None:
    whole, _, _ = records(trained_model, 1.0)
    shed, feed, pipeline = records(trained_model, 0.2)
    assert pipeline.stats.shed > 0.7 * pipeline.stats.packets  # most packets were not scored
    assert feed.missed == 0
    assert len(whole) == 8705
    assert summary(shed) == summary(whole)


def test_under_heavy_overload_shed_packets_are_left_out_and_counted(
        trained_model: Path) -> None:
    whole, _, _ = records(trained_model, 1.0)
    heavy, feed, pipeline = records(trained_model, 0.05)  # under ConnFeed.full_share
    assert feed.missed == pipeline.stats.shed > 0
    seen = sum(r.orig_pkts + r.resp_pkts for r in heavy if not r.in_progress)
    total = sum(r.orig_pkts + r.resp_pkts for r in whole if not r.in_progress)
    assert seen + feed.missed >= total > seen


def test_deep_overload_counts_what_connections_miss(trained_model: Path) -> None:
    whole, _, _ = records(trained_model, 1.0)
    deep, feed, pipeline = records(trained_model, 0.05, decode_shed=False)
    assert feed.missed == pipeline.stats.unread == pipeline.stats.shed > 0
    seen = sum(r.orig_pkts + r.resp_pkts for r in deep if not r.in_progress)
    total = sum(r.orig_pkts + r.resp_pkts for r in whole if not r.in_progress)
    assert seen + feed.missed >= total > seen  # the records lack what was never decoded
