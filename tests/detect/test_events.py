"""Event aggregation: anomalous packets merge into a few readable events."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from netids.capture.pcapfile import read_batches
from netids.detect.decode import decode
from netids.detect.event_records import EventConfig, EventUpdate, severity
from netids.detect.events import EventAggregator
from netids.detect.explain import TARGET_FLOOD
from netids.detect.frames import FrameBatch
from netids.detect.packets import PacketBatch
from netids.detect.scored import ScoredBatch
from tests.support import make_packets

SYN_FLOOD = "attack/stopddos__pkt.TCP.synflood.spoofed.pcap"


def scored(
    packets: PacketBatch,
    scores: np.ndarray | float = 0.9995,
    kinds: str | list[str] = "flood",
    threshold: float = 0.5,
    frames: FrameBatch | None = None,
) -> ScoredBatch:
    """Score every packet of ``packets`` as given; explanation names the packet's position."""
    n = len(packets)
    scores = np.broadcast_to(np.asarray(scores, np.float32), (n,)).copy()
    if frames is None:
        frames = FrameBatch.from_frames([i.to_bytes(4, "big") * 15 for i in range(n)], packets.ts)
    anomalous = scores >= threshold
    idx = np.flatnonzero(anomalous)
    kinds = [kinds] * n if isinstance(kinds, str) else kinds
    return ScoredBatch(
        frames=frames,
        packets=packets,
        features=np.zeros((n, 1), np.float32),
        scores=scores,
        threshold=threshold,
        anomalous=anomalous,
        kinds=[kinds[i] for i in idx],
        explanations=[f"packet {i} score {scores[i]:.4f}" for i in idx],
    )


def latest(updates: list[EventUpdate]) -> dict[str, EventUpdate]:
    """The last state of every event among successive updates."""
    out: dict[str, EventUpdate] = {}
    for u in updates:
        out[u.id] = u
    return out


def test_real_spoofed_syn_flood_of_75k_packets_becomes_one_event(shared_data: Path) -> None:
    path = shared_data / SYN_FLOOD
    agg = EventAggregator()
    updates: list[EventUpdate] = []
    total = 0
    for rerun in range(2):  # the 37,841-packet capture twice: one 47 s flood of 75,682 packets
        shift = rerun * 23.7
        for frames in read_batches(path, batch_size=4096):
            packets = decode(frames)
            packets = replace(packets, ts=packets.ts + shift)
            updates += agg.add(scored(packets, frames=frames))
            total += len(packets)
    updates += agg.flush()
    events = latest(updates)
    assert total == 75_682
    assert 1 <= len(events) <= 5
    assert sum(e.packets for e in events.values()) == total
    big = max(events.values(), key=lambda e: e.packets)
    assert (big.src, big.dst, big.dst_port, big.proto, big.kind) == (
        "", "10.10.10.10", 25565, "TCP", "flood",
    )
    assert big.packets == total and big.src_count > 10_000
    assert big.last_seen - big.first_seen == pytest.approx(23.7 + 23.68, abs=0.1)
    samples = [s for u in updates if u.id == big.id for s in u.new_samples]
    assert len(samples) == 5 and [s.seq for s in samples] == [0, 1, 2, 3, 4]
    first = next(read_batches(path, batch_size=5))
    assert [s.data for s in samples] == [first.frame(i) for i in range(5)]
    assert "TCP" in samples[0].summary and "flags [S]" in samples[0].summary


@pytest.mark.slow
def test_lab_hping3_spoofed_syn_flood_becomes_one_event(lab_net, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """hping3 floods host b from a with random spoofed sources; b's tcpdump records it."""
    if shutil.which("hping3") is None or shutil.which("tcpdump") is None:
        pytest.skip("needs hping3 and tcpdump (apt install hping3 tcpdump)")
    pcap = tmp_path / "flood.pcap"
    dump = lab_net.popen("b", "tcpdump", "-nn", "-i", "eth0", "-B", "65536", "-w", str(pcap),
                         "tcp[tcpflags] & tcp-syn != 0 and dst port 80")
    deadline = time.monotonic() + 10
    while not pcap.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)
    lab_net.run("a", "hping3", "-q", "-S", "-p", "80", "--rand-source", "-i", "u15",
                "-c", "65000", lab_net.ip("b"), timeout=120, check=False)
    time.sleep(1.0)
    os.killpg(dump.pid, signal.SIGINT)
    dump.wait(timeout=10)

    agg = EventAggregator()
    updates: list[EventUpdate] = []
    total = 0
    for frames in read_batches(pcap, batch_size=4096):
        updates += agg.add(scored(decode(frames), frames=frames))
        total += len(frames)
    updates += agg.flush()
    events = latest(updates)
    assert total >= 50_000
    assert 1 <= len(events) <= 5
    assert sum(e.packets for e in events.values()) == total
    big = max(events.values(), key=lambda e: e.packets)
    assert (big.src, big.dst, big.dst_port, big.proto) == ("", lab_net.ip("b"), 80, "TCP")
    assert big.packets >= total - 16 and big.src_count > 1000
    logging.getLogger(__name__).info(
        "lab flood: %d SYN packets captured -> %d events, largest %d packets from %d sources",
        total, len(events), big.packets, big.src_count,
    )


def test_port_scan_of_one_host_is_one_event_with_no_single_port() -> None:
    n = 1000
    pk = make_packets(n, src="198.51.100.9", dst="10.0.0.5")
    pk = replace(pk, dport=np.arange(1, n + 1, dtype=np.int32))
    (event,) = EventAggregator().add(scored(pk, kinds="port scan"))
    assert (event.src, event.dst, event.dst_port, event.src_port) == (
        "198.51.100.9", "10.0.0.5", None, 40000,
    )
    assert event.packets == n and event.src_count == event.dst_count == 1


def test_a_scanned_hosts_resets_join_the_scan_instead_of_naming_the_victim() -> None:
    n = 300
    scan = make_packets(n, src="198.51.100.9", dst="10.0.0.5", ts=np.arange(n) * 0.002)
    scan = replace(scan, dport=np.arange(1, n + 1, dtype=np.int32))
    resets = make_packets(n, src="10.0.0.5", dst="198.51.100.9", sport=1,
                          ts=np.arange(n) * 0.002 + 0.001)
    resets = replace(resets, sport=np.arange(1, n + 1, dtype=np.int32),
                     dport=np.full(n, 40000, np.int32))
    both = PacketBatch.concat([scan, resets])
    kinds = ["port scan"] * n + ["unusual flags"] * n
    scores = np.r_[np.full(n, 0.9995), np.full(n, 0.99999)].astype(np.float32)
    (event,) = EventAggregator().add(scored(both, scores=scores, kinds=kinds))
    assert (event.src, event.dst, event.kind, event.packets) == (
        "198.51.100.9", "10.0.0.5", "port scan", 2 * n)
    assert (event.src_port, event.dst_port) == (40000, None)
    assert event.score_max == pytest.approx(0.9995)  # its own packets' score and words
    assert event.explanation.startswith("packet ") and int(event.explanation.split()[1]) < n


def test_answers_in_a_later_batch_join_the_open_flood_even_when_its_sources_merged() -> None:
    n = 100
    agg = EventAggregator()
    flood = make_packets(n, src=[f"10.9.0.{i}" for i in range(n)], dst="10.0.0.1")
    (event,) = agg.add(scored(flood))
    assert (event.src, event.dst_port) == ("", 80)
    synacks = make_packets(n, src="10.0.0.1", dst=[f"10.9.0.{i}" for i in range(n)],
                           sport=80, dport=40000, ts=np.arange(n) * 0.001 + 1.0)
    (later,) = agg.add(scored(synacks, kinds="unusual flags"))
    assert later.id == event.id and later.packets == 2 * n
    assert (later.src, later.dst, later.dst_port, later.kind) == ("", "10.0.0.1", 80, "flood")
    alone = EventAggregator().add(scored(synacks, kinds="unusual flags"))  # nothing to answer
    assert [(e.src, e.packets) for e in alone] == [("10.0.0.1", n)]


def test_host_sweep_merges_targets_and_counts_them() -> None:
    n = 200
    pk = make_packets(n, src="198.51.100.9", dst=[f"10.0.1.{i}" for i in range(n)])
    (event,) = EventAggregator().add(scored(pk, kinds="host sweep"))
    assert (event.src, event.dst, event.packets) == ("198.51.100.9", "", n)
    assert abs(event.dst_count - n) <= 0.1 * n  # past 64, a HyperLogLog's estimate
    assert event.reach.startswith("200 packets to ~")


def test_a_scan_is_one_event_per_scanner_and_protocol_with_its_targets_counted() -> None:
    """nmap's host discovery probes each host by ARP, ping and TCP before it scans one: that
    is one scan of few hosts, not an event per probed host."""
    hosts = [f"10.0.0.{i}" for i in (11, 21, 22, 24)]
    arp = make_packets(4, src="10.0.0.66", dst=hosts, ts=np.arange(4) * 0.01)
    arp = replace(arp, proto=np.full(4, -1, np.int32), ethertype=np.full(4, 0x0806, np.int32))
    tcp = make_packets(4, src="10.0.0.66", dst=hosts, ts=np.arange(4) * 0.01 + 0.1)
    one = make_packets(50, src="10.0.0.66", dst="10.0.0.10", ts=np.arange(50) * 0.01 + 1.0)
    one = replace(one, dport=np.arange(1, 51, dtype=np.int32))
    agg = EventAggregator()
    first = agg.add(scored(PacketBatch.concat([arp, tcp]), kinds="port scan"))
    assert sorted((e.proto, e.dst, e.dst_count, e.packets) for e in first) == [
        ("ARP", "", 4, 4), ("TCP", "", 4, 4)]
    (tcp_scan,) = agg.add(scored(one, kinds="port scan"))
    assert (tcp_scan.src, tcp_scan.dst, tcp_scan.dst_count, tcp_scan.packets) == (
        "10.0.0.66", "", 5, 54)
    alone = EventAggregator().add(scored(one, kinds="port scan"))  # one target: named
    assert [(e.dst, e.dst_count) for e in alone] == [("10.0.0.10", 1)]


def test_a_few_sources_keep_their_own_events() -> None:
    pk = make_packets(30, src=["192.0.2.1", "192.0.2.2", "192.0.2.3"] * 10, dst="10.0.0.1")
    events = EventAggregator().add(scored(pk))
    assert sorted((e.src, e.packets) for e in events) == [
        ("192.0.2.1", 10), ("192.0.2.2", 10), ("192.0.2.3", 10),
    ]


def test_flood_trickling_in_ends_in_one_merged_event_after_a_handful() -> None:
    agg = EventAggregator(EventConfig(max_sources=16))
    updates = []
    for i in range(500):  # one spoofed packet per batch
        pk = make_packets(1, src=f"10.9.{i // 200}.{i % 200}", dst="10.0.0.1", ts=[i * 0.01])
        updates += agg.add(scored(pk))
    events = latest(updates)
    assert len(events) == 17  # 16 sources on their own, then "many sources"
    merged = [e for e in events.values() if e.src == ""]
    assert len(merged) == 1 and merged[0].packets == 500 - 16
    assert sum(e.packets for e in events.values()) == 500


@pytest.mark.parametrize("kind", [TARGET_FLOOD, "reflection flood"])
def test_a_target_under_flood_is_one_event_about_the_target_not_its_clients(kind: str) -> None:
    # normal clients of a flooded server (or of one hit by replies it never asked for, as a
    # lab run's DNS clients while a UDP flood hit their server): only what reaches it is unusual
    pk = make_packets(6, src=["10.0.0.21", "10.0.0.24"] * 3, dst="10.0.0.10", dport=80)
    (event,) = EventAggregator().add(scored(pk, kinds=kind))
    assert (event.src, event.dst, event.kind) == ("", "10.0.0.10", kind)
    assert (event.packets, event.src_count) == (6, 2)
    flood = EventAggregator().add(scored(pk, kinds="flood"))  # the senders' doing: theirs
    assert sorted(e.src for e in flood) == ["10.0.0.21", "10.0.0.24"]


def test_kinds_and_protocols_are_separate_events() -> None:
    pk = make_packets(4, src="192.0.2.1", dst="10.0.0.1")
    events = EventAggregator().add(scored(pk, kinds=["flood", "scan", "flood", "scan"]))
    assert sorted((e.kind, e.packets) for e in events) == [("flood", 2), ("scan", 2)]
    udp = make_packets(3, src="192.0.2.1", dst="10.0.0.1", proto=17, ts=[0.1, 0.2, 0.3])
    (event,) = EventAggregator().add(scored(udp))
    assert event.proto == "UDP"


def test_a_quiet_gap_past_refold_starts_a_new_event_even_inside_one_batch() -> None:
    cfg = EventConfig(gap=60, refold=120)
    ts = np.array([0.0, 1.0, 2.0, 200.0, 201.0])
    pk = make_packets(5, src="192.0.2.1", dst="10.0.0.1", ts=ts + 1e9)
    events = EventAggregator(cfg).add(scored(pk))
    assert sorted(e.packets for e in events) == [2, 3]
    agg = EventAggregator(cfg)
    first = agg.add(scored(make_packets(1, src="192.0.2.1", dst="10.0.0.1", ts=[1e9])))
    again = agg.add(scored(make_packets(1, src="192.0.2.1", dst="10.0.0.1", ts=[1e9 + 30])))
    later = agg.add(scored(make_packets(1, src="192.0.2.1", dst="10.0.0.1", ts=[1e9 + 200])))
    assert first[0].id == again[0].id != later[0].id
    assert again[0].packets == 2 and later[0].packets == 1


def test_a_host_flagging_the_same_way_minutes_later_re_opens_its_event() -> None:
    """One incident, one event: single odd packets of one host to several peers, minutes
    apart (the event ended in between), are one event that is updated, its targets counted."""
    agg = EventAggregator(EventConfig(gap=60, refold=900))
    updates: list[EventUpdate] = []
    for t, peer in ((0.0, "10.0.0.1"), (300.0, "10.0.0.2"), (700.0, "10.0.0.3")):
        pk = make_packets(1, src="192.0.2.1", dst=peer, ts=[1e9 + t])
        updates += agg.add(scored(pk, kinds="unusual size"))
        updates += agg.flush(1e9 + t + 100)  # what the sink does after each batch: it ends
    (event,) = latest(updates).values()
    assert (event.src, event.dst, event.kind, event.packets, event.dst_count) == (
        "192.0.2.1", "", "unusual size", 3, 3)
    assert agg.open_events == 0  # ended again, and re-opened by the next matching packet
    late = agg.add(scored(make_packets(1, src="192.0.2.1", dst="10.0.0.1", ts=[1e9 + 2000]),
                          kinds="unusual size"))
    assert late[0].id != event.id  # past refold: a new incident


def test_an_attack_after_an_odd_packet_is_a_new_event_not_hidden_in_the_old_one() -> None:
    agg = EventAggregator()
    odd = agg.add(scored(make_packets(1, src="192.0.2.1", dst="10.0.0.1", ts=[1e9]),
                         kinds="unusual size"))
    flood = agg.add(scored(make_packets(50, src="192.0.2.1", dst="10.0.0.1",
                                        ts=1e9 + 5 + np.arange(50) * 0.01)))
    again = agg.add(scored(make_packets(1, src="192.0.2.1", dst="10.0.0.2", ts=[1e9 + 10]),
                           kinds="unusual size"))
    assert [(e.kind, e.packets) for e in flood] == [("flood", 50)]
    assert flood[0].id != odd[0].id == again[0].id
    assert again[0].packets == 2


def test_only_anomalous_packets_count_and_the_top_explanation_wins() -> None:
    pk = make_packets(6, src="192.0.2.1", dst="10.0.0.1")
    scores = np.array([0.1, 0.6, 0.9995, 0.7, 0.2, 0.55], np.float32)
    (event,) = EventAggregator().add(scored(pk, scores=scores))
    assert event.packets == 4
    assert event.score_max == pytest.approx(0.9995)
    assert event.score_mean == pytest.approx((0.6 + 0.9995 + 0.7 + 0.55) / 4)
    assert event.explanation == "packet 2 score 0.9995"
    assert event.severity == "anomalous" and event.threshold == 0.5


def test_severity_follows_the_calibrated_score() -> None:
    cfg = EventConfig(suspicious_at=0.4, anomalous_at=0.9)
    assert [severity(s, cfg) for s in (0.1, 0.4, 0.89, 0.9)] == [
        "normal", "suspicious", "suspicious", "anomalous",
    ]
    pk = make_packets(2, src="192.0.2.1", dst="10.0.0.1")
    (event,) = EventAggregator(cfg).add(scored(pk, scores=0.6))
    assert event.severity == "suspicious"


def test_samples_are_kept_once_and_capped() -> None:
    agg = EventAggregator(EventConfig(samples=3))
    a = agg.add(scored(make_packets(2, src="192.0.2.1", dst="10.0.0.1")))
    b = agg.add(scored(make_packets(4, src="192.0.2.1", dst="10.0.0.1", ts=np.arange(4) + 1.0)))
    c = agg.add(scored(make_packets(4, src="192.0.2.1", dst="10.0.0.1", ts=np.arange(4) + 9.0)))
    assert [s.seq for s in a[0].new_samples] == [0, 1]
    assert [s.seq for s in b[0].new_samples] == [2]
    assert c[0].new_samples == () and c[0].packets == 10


def test_flush_ends_idle_events_only() -> None:
    agg = EventAggregator(EventConfig(gap=10))
    agg.add(scored(make_packets(1, src="192.0.2.1", dst="10.0.0.1", ts=[100.0])))
    agg.add(scored(make_packets(1, src="192.0.2.2", dst="10.0.0.1", ts=[108.0])))
    ended = agg.flush(now=115.0)
    assert [e.src for e in ended] == ["192.0.2.1"] and agg.open_events == 1
    assert [e.src for e in agg.flush()] == ["192.0.2.2"] and agg.open_events == 0


def test_open_events_are_capped() -> None:
    agg = EventAggregator(EventConfig(max_open=5, max_sources=1000, max_targets=1000,
                                      max_pairs=1000))
    pk = make_packets(50, src=[f"192.0.2.{i}" for i in range(50)],
                      dst=[f"10.0.0.{i}" for i in range(50)])
    events = agg.add(scored(pk))
    assert agg.open_events == 6
    assert sum(e.packets for e in events) == 50
    assert [(e.src, e.dst, e.packets) for e in events if e.src == ""] == [("", "", 45)]


def test_a_flood_spoofing_both_addresses_merges_after_a_handful_of_pairs() -> None:
    """A DHCP flood or a SYN flood with random sources *and* targets: every pair is new, so
    no source has many targets nor target many sources; past ``max_pairs`` pairs of one
    protocol and kind they merge into one "many -> many" event."""
    n = 200
    pk = make_packets(n, src=[f"10.1.{i // 250}.{i % 250}" for i in range(n)],
                      dst=[f"10.2.{i // 250}.{i % 250}" for i in range(n)], proto=17)
    events = EventAggregator(EventConfig(max_pairs=16)).add(scored(pk, kinds="spoofed flood"))
    merged = [e for e in events if (e.src, e.dst) == ("", "")]
    assert len(events) <= 17 and len(merged) == 1
    assert sum(e.packets for e in events) == n and merged[0].src_count > 100


def test_a_protocol_scan_is_one_event_not_one_per_protocol() -> None:
    pk = make_packets(40, src="192.0.2.1", dst="10.0.0.1", proto=6)
    protos = np.arange(40) + 60  # IP protocols 60..99, none of them TCP, UDP or ICMP
    pk = PacketBatch(**{**{f: getattr(pk, f) for f in pk.__dataclass_fields__},
                        "proto": protos.astype(np.int16)})
    (event,) = EventAggregator().add(scored(pk, kinds="port scan"))
    assert (event.src, event.proto, event.packets) == ("192.0.2.1", "IP", 40)


def test_every_attack_of_the_dev_mix_keeps_an_event_of_its_own(shared_data: Path) -> None:
    """The dev mix through the shipped model and the real aggregation: one event per
    incident (616 before folding, most of them one packet of a spoofed flood or one IP
    protocol of a protocol scan), yet no event holds packets of two attacks and every
    attack the model flags still has an event where its packets are the most."""
    from netids.detect.pipeline import Pipeline
    from netids.training.checkpoint import load_detector

    labels = np.genfromtxt(shared_data / "mixed_dev.labels.csv", delimiter=",", names=True,
                           dtype=None, encoding="utf-8", usecols=("index", "attack_kind"))
    kind_of = np.array([k or "" for k in labels["attack_kind"]], dtype=object)
    pipeline = Pipeline(load_detector(Path("models/default.pt")))
    agg = _Members()
    final: dict[str, EventUpdate] = {}
    for frames in read_batches(shared_data / "mixed_dev.pcap", 4096):
        s = pipeline.process(frames)
        agg.offset = frames.first_index
        final.update(latest(agg.add(s) + agg.flush(float(s.packets.ts[-1]))))
    final.update(latest(agg.flush()))
    owners: set[str] = set()
    for members in agg.members.values():
        attacks = {k for k in kind_of[members] if k}
        assert len(attacks) <= 1, attacks  # never two attacks in one event
        values, counts = np.unique(kind_of[members].astype(str), return_counts=True)
        owners.add(str(values[np.argmax(counts)]))
    flagged = {str(k) for k in kind_of[:pipeline.stats.packets] if k}
    seen = {k for m in agg.members.values() for k in kind_of[m] if k}
    assert seen - owners == set()
    assert len(flagged) >= 15 and len(final) < 200


class _Members(EventAggregator):
    """The aggregator, noting which packets of the file went into which event."""

    offset = 0

    def __init__(self) -> None:
        super().__init__()
        self.members: dict[str, list[int]] = {}

    def _grow(self, ev, b, g, n, rows, mine) -> None:  # type: ignore[no-untyped-def]
        self.members.setdefault(ev.id, []).extend((self.offset + b.idx[rows]).tolist())
        super()._grow(ev, b, g, n, rows, mine)


def test_nothing_anomalous_gives_no_updates() -> None:
    pk = make_packets(10, src="192.0.2.1", dst="10.0.0.1")
    assert EventAggregator().add(scored(pk, scores=0.1)) == []
