"""Bounded state under floods: event aggregation and context features hold a fixed amount of
state however many addresses a flood spoofs, and keep what they know of regular hosts."""

from __future__ import annotations

import re
from dataclasses import replace

import numpy as np

from netids.detect.context import FEATURE_NAMES, ContextConfig, ContextFeatures
from netids.detect.event_records import EventConfig, EventUpdate
from netids.detect.events import EventAggregator
from netids.detect.packets import PacketBatch
from tests.detect.test_events import scored
from tests.support import make_packets

V4 = np.uint64(0xFFFF_0000_0000)  # IPv4 addresses live in the low half, mapped


def spoofed(n: int, t0: float, rng: np.random.Generator, target: str | None = "192.0.2.1",
            rate: float = 20_000.0) -> PacketBatch:
    """SYNs from ``n`` random sources to ``target`` (to random targets when None)."""
    pk = make_packets(n, src="10.0.0.1", dst=target or "10.0.0.2", ts=t0 + np.arange(n) / rate)
    src = V4 | rng.integers(1 << 24, 224 << 24, n, dtype=np.uint64)
    dst = V4 | rng.integers(1 << 24, 224 << 24, n, dtype=np.uint64) if target is None \
        else pk.dst_lo
    return replace(pk, src_lo=src, dst_lo=dst)


def flood_events(target: str | None, config: EventConfig) -> tuple[EventAggregator,
                                                                    dict[str, EventUpdate], int]:
    """200k spoofed packets in batches of 4096; the aggregator, the events' last states and
    the most fans held at once."""
    rng = np.random.default_rng(3)
    agg, events, most = EventAggregator(config), {}, 0
    for i in range(0, 200_000, 4096):
        n = min(4096, 200_000 - i)
        for u in agg.add(scored(spoofed(n, i / 20_000, rng, target))):
            events[u.id] = u
        most = max(most, len(agg._fan_in), len(agg._fan_out))
    return agg, events, most


def test_a_spoofed_flood_is_one_event_with_fixed_size_state() -> None:
    config = EventConfig(fan_capacity=4096)
    agg, events, most = flood_events("192.0.2.1", config)
    assert most <= 4096
    fans = {s.name: s for s in agg.stats()}
    assert fans["targets per source"].evicted > 150_000  # every spoofed source, recycled
    flood = max(events.values(), key=lambda e: e.packets)
    assert (flood.src, flood.dst) == ("", "192.0.2.1")
    assert flood.packets > 199_900
    assert abs(flood.src_count - 200_000) < 0.1 * 200_000
    assert re.fullmatch(r"\d{3},\d{3} packets from ~\d{3},\d{3} sources", flood.reach)
    assert len(flood.top_sources) == config.top_sources
    assert len(agg._open) <= 1 + config.max_sources  # the first sources' own, then one


def test_random_sources_to_random_targets_stay_under_the_caps() -> None:
    config = EventConfig(fan_capacity=4096, max_open=1000)
    agg, events, most = flood_events(None, config)
    assert most <= 4096
    assert agg.open_events <= config.max_open + 1
    stats = {s.name: s for s in agg.stats()}
    assert stats["pairs per kind"].size <= 4  # one fan per (protocol, kind): new pairs merge
    assert len(events) <= config.max_pairs + 2  # the first pairs' own, then "many -> many"
    many = [e for e in events.values() if e.src == "" and e.dst == ""]
    assert len(many) == 1 and many[0].packets >= 198_000
    assert many[0].reach.startswith(f"{many[0].packets:,} packets from ~")
    assert sum(e.packets for e in events.values()) == 200_000


def test_context_keeps_a_regular_host_through_a_flood_of_new_sources() -> None:
    """A host seen for a minute keeps its statistics while 100k spoofed sources pass through
    a 4096-key table: its next packet's source features are those of a quiet network."""
    config = ContextConfig(capacity=4096)
    host = make_packets(60, src="10.0.0.7", dst="10.0.0.1", ts=np.arange(60.0))
    after = make_packets(1, src="10.0.0.7", dst="10.0.0.1", ts=np.array([65.0]))
    quiet, flooded = ContextFeatures(config), ContextFeatures(config)
    quiet.update(host)
    flooded.update(host)
    rng = np.random.default_rng(5)
    for i in range(25):
        flooded.update(spoofed(4000, 60.0 + i * 0.2, rng, target="10.0.0.9"))
    assert flooded.tables["src"].evicted > 90_000
    src_cols = [i for i, name in enumerate(FEATURE_NAMES) if name.startswith("src_")]
    expect, got = quiet.update(after)[0, src_cols], flooded.update(after)[0, src_cols]
    np.testing.assert_allclose(got, expect, rtol=1e-9)
