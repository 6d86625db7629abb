"""The ARP watch: the same answers as before on real traffic, bounded and fast under a flood."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from netids.capture.pcapfile import read_batches
from netids.detect.arpwatch import ArpWatch
from netids.detect.context import ContextConfig
from netids.detect.decode import decode
from netids.detect.packets import PacketBatch
from tests.support import SAMPLE, make_packets


class UnboundedWatch:
    """The watch as it was before it was bounded (each packet rescanned its MAC's claims)."""

    def __init__(self, hold: float) -> None:
        self.hold = hold
        self.binding: dict[int, tuple[int, float]] = {}
        self.claims: dict[int, dict[int, float]] = {}

    def update(self, p: PacketBatch) -> np.ndarray:
        out = np.zeros((len(p), 2), dtype=np.float32)
        rows = np.flatnonzero((p.ethertype == 0x0806) & (p.arp_sha != 0))
        for i, ip, mac, t in zip(rows.tolist(), p.src_lo[rows].tolist(),
                                 p.arp_sha[rows].tolist(), p.ts[rows].tolist(), strict=True):
            if ip & 0xFFFF_FFFF == 0:
                continue
            held = self.binding.get(ip)
            if held is not None and held[0] != mac and t - held[1] <= self.hold:
                out[i, 0] = 1.0
            self.binding[ip] = (mac, t)
            claims = self.claims.setdefault(mac, {})
            claims[ip] = t
            for old in [k for k, seen in claims.items() if t - seen > self.hold]:
                del claims[old]
            out[i, 1] = len(claims)
        return out


def test_real_arp_spoofing_gets_the_same_marks_as_the_unbounded_watch(shared_data: Path) -> None:
    config = ContextConfig()
    for capture in (SAMPLE, shared_data / "mixed_dev.pcap"):
        old, new = UnboundedWatch(config.arp_hold), ArpWatch(config.arp_hold, config.arp_capacity)
        marked = 0
        for batch in read_batches(capture):
            packets = decode(batch)
            expect = old.update(packets)
            np.testing.assert_array_equal(new.update(packets), expect)
            marked += int((expect[:, 0] > 0).sum())
        assert capture != SAMPLE or marked > 0  # the sample's spoofing is seen by both


def test_an_arp_flood_from_one_mac_is_bounded_and_linear() -> None:
    n = 20_000
    rng = np.random.default_rng(0)
    pk = make_packets(n, src="10.0.0.1", dst="10.0.0.2", ts=np.arange(n) * 0.001)
    pk = replace(pk, ethertype=np.full(n, 0x0806, np.int32), proto=np.full(n, -1, np.int16),
                 src_lo=np.uint64(0xFFFF_0000_0000)
                 | rng.integers(1 << 24, 1 << 31, n, dtype=np.uint64),
                 arp_sha=np.full(n, 0x020000000009, np.uint64), arp_op=np.full(n, 2, np.int16))
    watch = ArpWatch(hold=300.0, capacity=4096, max_claims=1024)
    started = time.process_time()
    marks = watch.update(pk)
    assert time.process_time() - started < 5.0  # the unbounded watch: minutes
    assert marks[:, 1].max() == 1024 and len(watch.claims[0x020000000009]) == 1024
    assert len(watch.binding) <= 4096 and watch.stats().evicted >= n - 4096
