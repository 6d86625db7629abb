"""The bounded key table: new keys compete among themselves, established ones are kept."""

from __future__ import annotations

import numpy as np

from netids.detect.keytable import KeyTable
from netids.detect.slot_index import SlotIndex


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


def test_the_slot_index_agrees_with_a_dict_through_puts_removes_and_rebuilds() -> None:
    rng = np.random.default_rng(11)
    index, truth = SlotIndex(capacity=512), {}
    for step in range(400):
        universe = 1 << 64 if step % 3 else 700  # small universes: the same keys come back
        keys = np.unique(rng.integers(0, universe, 60, dtype=np.uint64))
        held = index.get(keys)
        assert held.tolist() == [truth.get(k, -1) for k in keys.tolist()]
        new = keys[held < 0][: max(0, 512 - len(truth))]
        slots = rng.integers(0, 1 << 40, len(new))
        index.put(new, slots)
        truth.update(zip(new.tolist(), slots.tolist(), strict=True))
        gone = rng.choice(np.array(list(truth), dtype=np.uint64), min(40, len(truth)),
                          replace=False)
        index.remove(gone)
        for k in gone.tolist():
            del truth[k]
    everything = np.array(list(truth), dtype=np.uint64)
    assert index.get(everything).tolist() == list(truth.values())


def test_keys_hashing_to_one_home_position_are_all_found() -> None:
    index = SlotIndex(capacity=64)
    candidates = np.arange(1, 20_000, dtype=np.uint64)
    home = index._home(candidates)  # noqa: SLF001 - the test needs colliding keys
    same_home = candidates[home == home[0]][:40]
    assert len(same_home) == 40
    index.put(same_home, np.arange(40))
    assert index.get(same_home).tolist() == list(range(40))
    index.remove(same_home[::2])
    assert index.get(same_home).tolist() == [-1 if i % 2 == 0 else i for i in range(40)]
