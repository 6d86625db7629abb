"""Load shedding: which packets an overloaded live pipeline scores, and that it counts all."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from netids.capture.pcapfile import read_batches
from netids.detect.decode import decode
from netids.detect.pipeline import Pipeline
from netids.detect.shedding import (
    LoadShedder,
    SheddingConfig,
    choose_sample,
    destination_key,
)
from netids.live import LiveState
from netids.training.checkpoint import load_detector
from tests.support import SAMPLE


def test_a_flood_gives_up_packets_first_and_light_destinations_are_scored_whole() -> None:
    rng = np.random.default_rng(1)
    key = np.where(rng.random(4096) < 0.9, 7, rng.integers(100, 400, 4096)).astype(np.uint64)
    kept = choose_sample(key, 0.25)
    assert len(kept) <= 1024 and np.all(np.diff(kept) > 0)
    dest, n = np.unique(key, return_counts=True)
    dest_kept, n_kept = np.unique(key[kept], return_counts=True)
    light = dest[(dest != 7)]
    assert set(light.tolist()) <= set(dest_kept.tolist())  # every other destination is scored
    for d, m in zip(dest_kept.tolist(), n_kept.tolist(), strict=True):
        if d != 7:
            assert m == n[dest == d][0]  # ... with all of its packets
    flood_kept = kept[key[kept] == 7]
    assert len(flood_kept) < 0.25 * np.count_nonzero(key == 7)  # the flood is sampled
    assert flood_kept.max() - flood_kept.min() > 3000  # spread over the batch, not its start


@pytest.mark.parametrize("share", [0.5, 0.1, 1 / 256])
def test_the_sample_stays_within_the_share_with_any_mix_of_destinations(share: float) -> None:
    rng = np.random.default_rng(2)
    for distinct in (1, 10, 1000, 4096):
        key = rng.integers(0, distinct, 4096).astype(np.uint64)
        kept = choose_sample(key, share)
        assert 1 <= len(kept) <= int(np.ceil(share * 4096))
        assert len(np.unique(kept)) == len(kept) and kept.max() < 4096


def test_the_scored_share_halves_while_the_queue_backs_up_and_grows_back() -> None:
    shedder = LoadShedder(SheddingConfig(backlog_high=6, backlog_low=1, min_share=1 / 16))
    assert [shedder.share_for(b) for b in (0, 2, 6, 9, 12, 20, 30)] == [
        1.0, 1.0, 0.5, 0.25, 0.125, 0.0625, 0.0625]
    assert shedder.share_for(3) == 0.0625  # in between: held
    shares = [shedder.share_for(0) for _ in range(20)]
    assert shares == sorted(shares) and shares[-1] == 1.0
    assert not shedder.deep
    for _ in range(4):
        shedder.share_for(30)
    assert shedder.share == 1 / 16 and not shedder.deep
    shedder.share_for(30)
    assert shedder.deep  # at the smallest share and still behind
    shedder.share_for(0)
    assert not shedder.deep
    off = LoadShedder(SheddingConfig(enabled=False))
    assert off.share_for(60) == 1.0


def test_a_shed_batch_is_counted_whole_and_scores_its_sample(trained_model: Path) -> None:
    detector = load_detector(trained_model)
    whole, shed = Pipeline(detector), Pipeline(detector)
    scored_n = 0
    for frames in read_batches(SAMPLE, 2048):
        whole.process(frames)
        scored = shed.process(frames, 0.25)
        assert scored.unscored is not None
        assert len(scored) + len(scored.unscored) == len(frames)
        assert len(scored) <= np.ceil(0.25 * len(frames))
        every = set(destination_key(decode(frames)).tolist())
        assert every == set(destination_key(scored.packets).tolist()) | set(
            destination_key(scored.unscored).tolist())
        scored_n += len(scored)
    a, b = whole.stats, shed.stats
    assert (b.packets, b.tcp, b.udp, b.other, b.undecoded) == (
        a.packets, a.tcp, a.udp, a.other, a.undecoded)  # every packet counted
    assert b.shed == a.packets - scored_n > 0 and a.shed == 0


def test_in_deep_overload_the_rest_is_counted_without_decoding(trained_model: Path) -> None:
    detector = load_detector(trained_model)
    pipeline, live = Pipeline(detector), LiveState()
    total = scored_n = 0
    for frames in read_batches(SAMPLE, 2048):
        scored = pipeline.process(frames, 1 / 64, decode_shed=False)
        assert scored.unscored is None and scored.unread_ts is not None
        assert len(scored) + len(scored.unread_ts) == len(frames)
        step = np.diff(scored.frames.ts)  # every k-th frame: spread over the whole batch
        assert len(scored) == int(np.ceil(len(frames) / 64)) and (len(step) == 0 or step.min() >= 0)
        live.timeline.add(scored)
        total, scored_n = total + len(frames), scored_n + len(scored)
    s = pipeline.stats
    assert s.packets == total and s.shed == s.unread == total - scored_n
    assert s.tcp + s.udp + s.other == scored_n  # protocols only of what was decoded
    assert sum(live.timeline.packets) == total  # the packet rate still counts every packet
