"""The bounded key table: new keys compete among themselves, established ones are kept."""

from __future__ import annotations

import numpy as np

from netids.detect.keytable import KeyTable


def established_table() -> tuple[KeyTable, np.ndarray]:
    """A 4096-slot table with 100 regular hosts seen every second for 20 s."""
    table = KeyTable(capacity=4096)
    hosts = np.arange(1, 101, dtype=np.uint64)
    for second in range(20):
        table.lookup(hosts, np.full(100, float(second)))
    return table, hosts


def flood(table: KeyTable, keys: int, t0: float = 20.0) -> None:
    rng = np.random.default_rng(7)
    spoofed = rng.integers(1 << 32, 1 << 62, keys, dtype=np.uint64)
    for i, part in enumerate(np.array_split(spoofed, keys // 1000)):
        table.lookup(part, np.full(len(part), t0 + i * 0.01))


def test_a_flood_of_new_keys_does_not_evict_established_ones() -> None:
    table, hosts = established_table()
    assert table.stats("src").protected == 100
    flood(table, 100_000)
    assert table.contains(hosts).all()
    assert len(table) <= table.capacity and table.evicted >= 100_000 - table.capacity


def test_new_keys_evict_each_other_idlest_first() -> None:
    table, hosts = established_table()
    first = np.arange(1000, 1500, dtype=np.uint64)
    table.lookup(first, np.full(500, 20.0))  # seen once: not established
    flood(table, 100_000, t0=21.0)
    assert not table.contains(first).any()  # recycled by the flood after it
    assert table.contains(hosts).all()


def test_protection_is_capped_so_new_keys_still_get_slots() -> None:
    table = KeyTable(capacity=256, protect_share=0.5)
    old = np.arange(1, 121, dtype=np.uint64)  # 240 established keys in a 256-slot table
    for second in range(20):
        table.lookup(old, np.full(120, float(second)))
        table.lookup(old + np.uint64(1000), np.full(120, second + 0.5))
    slots, new = table.lookup(np.arange(5000, 5100, dtype=np.uint64), np.full(100, 30.0))
    assert new.all() and len(np.unique(slots)) == 100
    held = table.contains(old).sum() + table.contains(old + np.uint64(1000)).sum()
    assert held >= 128  # the protected half stays, the idlest of the rest made room
