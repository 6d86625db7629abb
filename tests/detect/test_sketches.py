"""Fixed-size summaries: distinct counts and heavy hitters within their stated error."""

from __future__ import annotations

import numpy as np
import pytest

from netids.detect.sketches import DistinctCount, HyperLogLog, TopK, hash64


def addresses(n: int, seed: int = 0) -> np.ndarray:
    """Hashes of ``n`` distinct random IPv4 addresses (as the aggregator hashes them)."""
    rng = np.random.default_rng(seed)
    v4 = rng.choice(1 << 32, size=n, replace=False).astype(np.uint64)
    return hash64(np.zeros(n, np.uint64), np.uint64(0xFFFF_0000_0000) | v4)


@pytest.mark.parametrize("n", [100, 1_000, 10_000, 47_900, 300_000])
def test_hyperloglog_is_within_four_standard_errors(n: int) -> None:
    hll = HyperLogLog(11)
    keys = addresses(n, seed=n)
    for part in np.array_split(keys, 7):  # batch by batch, repeats included
        hll.add(part)
        hll.add(part[: len(part) // 3])
    assert abs(hll.estimate - n) <= 4 * hll.error * n
    assert hll.registers.nbytes == 2048  # whatever n is


def test_distinct_count_is_exact_while_small_then_estimates() -> None:
    keys = addresses(200_000)
    c = DistinctCount(exact_up_to=64)
    c.add(keys[:40])
    c.add(keys[:64])
    assert (c.exact, c.estimate) == (True, 64)
    c.add(keys[:65])
    assert not c.exact and abs(c.estimate - 65) <= 3
    c.add(keys)
    assert abs(c.estimate - 200_000) <= 4 * HyperLogLog(11).error * 200_000


def test_top_k_holds_every_heavy_hitter_and_bounds_its_count() -> None:
    rng = np.random.default_rng(1)
    heavy = np.arange(1, 6, dtype=np.uint64)  # five botnet hosts among a spoofed flood
    stream = np.concatenate([np.repeat(heavy, 4000), rng.integers(10, 1 << 40, 80_000,
                                                                  dtype=np.uint64)])
    rng.shuffle(stream)
    top = TopK(16)
    for part in np.array_split(stream, 25):
        top.add(part)
    held = dict(top.top())
    bound = len(stream) / 16
    for key in heavy.tolist():
        assert key in held and 4000 <= held[key] <= 4000 + bound
    assert len(held) == 16 and top.total == len(stream)
