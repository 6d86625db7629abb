"""A flood's one-shot connection records are counted, not handed on; a scanner hiding in the
flood, and every record of traffic without a flood, still go through."""

from __future__ import annotations

import numpy as np
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether

from netids.detect.behaviour import BehaviourDetectors
from netids.detect.conn_columns import ConnRecords
from netids.detect.conn_fold import FloodFold
from netids.detect.connections import ConnTracker
from netids.detect.decode import decode
from netids.detect.frames import FrameBatch

VICTIM, SCANNER, TARGET = "10.0.0.80", "10.9.9.9", "10.0.0.5"


def syn(src: str, dst: str, sport: int, dport: int) -> bytes:
    return bytes(Ether() / IP(src=src, dst=dst) / TCP(sport=sport, dport=dport, flags="S"))


def spoofed(count: int, seed: int = 0) -> list[bytes]:
    rng = np.random.default_rng(seed)
    return [syn(f"{a}.{b}.{c}.{d}", VICTIM, int(p), 80) for (a, b, c, d), p in zip(
        rng.integers(1, 224, size=(count, 4)).tolist(), rng.integers(1024, 65535, count),
        strict=True)]


def probes(count: int) -> list[bytes]:
    return [syn(SCANNER, TARGET, 40000, port) for port in range(1, count + 1)]


def records(frames: list[bytes], seconds: float, seed: int = 1) -> ConnRecords:
    """Every record of ``frames`` sent in a random order over ``seconds``, as the tracker's
    last batch (each unanswered SYN is an S0 one-shot)."""
    order = np.random.default_rng(seed).permutation(len(frames))
    ts = 1000.0 + np.sort(np.random.default_rng(seed).random(len(frames))) * seconds
    tracker = ConnTracker()
    tracker.update(decode(FrameBatch.from_frames([frames[i] for i in order], ts)))
    return tracker.flush()


def test_the_spoofed_sources_of_a_flood_are_folded_and_its_scanner_kept() -> None:
    batch = records(spoofed(3000) + probes(40), seconds=1.0)
    fold = FloodFold()
    kept = fold.keep(batch)
    assert fold.folded == 3000
    assert sorted(r.resp_p for r in kept) == list(range(1, 41))
    assert {r.orig_h for r in kept} == {SCANNER}
    alerts = BehaviourDetectors().update(list(kept), now=1001.0)
    assert [(a.kind, a.source, a.count) for a in alerts] == [("vertical_scan", SCANNER, 25)]


def test_a_flood_from_one_source_keeps_one_record_per_target() -> None:
    frames = [syn(SCANNER, VICTIM, 1024 + i, 80) for i in range(500)] + probes(3)
    fold = FloodFold()
    kept = fold.keep(records(frames, seconds=0.5))
    assert fold.folded == 499
    assert sorted((r.resp_h, r.resp_p) for r in kept) == [
        (TARGET, 1), (TARGET, 2), (TARGET, 3), (VICTIM, 80)]
    assert [r.ts for r in kept if r.resp_h == VICTIM][0] == min(
        r.ts for r in records(frames, seconds=0.5) if r.resp_h == VICTIM)  # the first


def test_without_a_flood_every_record_goes_on() -> None:
    fold = FloodFold()
    slow = records(spoofed(150), seconds=600.0)  # 150 lone SYNs in 10 min: no flood
    few = records(spoofed(40, seed=3), seconds=0.1)  # a burst too small to be one
    assert fold.keep(slow) is slow and fold.keep(few) is few
    assert fold.folded == 0
