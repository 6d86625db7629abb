"""Whether a trained model looks trustworthy: the checks over checkpoint metadata, on the
shipped model, on the traffic profile of real captures, and at each limit."""

from __future__ import annotations

from pathlib import Path

from scapy.all import IP, UDP, Ether, IPv6, rdpcap, wrpcap

from netids.config import DEFAULT_MODEL
from netids.training.checkpoint import read_metadata
from netids.training.data import read_capture
from netids.training.quality import Limits, concerns, traffic_profile
from tests.support import small_pcap

GOOD = {"packets": 167_484, "time_span": {"seconds": 148_167.0}, "hosts": 40,
        "protocols": {"TCP": 120_000, "UDP": 40_000, "ARP": 7_484},
        "metrics": {"best_val_loss": 0.018, "calibration_packets": 33_792,
                    "history": [{"train_loss": 0.017, "val_loss": 0.018}]}}


def checks(meta: dict, threshold: float = 0.999) -> list[str]:
    return [c.check for c in concerns(meta, threshold)]


def test_the_shipped_model_raises_no_concern_and_its_metadata_has_the_card_figures() -> None:
    meta = read_metadata(DEFAULT_MODEL)
    assert concerns(meta, meta["threshold"]) == []
    assert meta["packets"] > 0 and meta["created"] and meta["sources"]
    assert {"best_val_loss", "best_epoch", "epochs_run", "calibration_packets"} <= set(
        meta["metrics"])


def test_the_profile_of_a_real_capture_matches_scapy(tmp_path: Path) -> None:
    path = small_pcap(tmp_path / "some.pcap", 3000)
    expected = set()
    for pkt in rdpcap(str(path)):
        for layer in (IP, IPv6):
            if layer in pkt:
                expected |= {pkt[layer].src, pkt[layer].dst}
    profile = traffic_profile([read_capture(path)[0]])
    assert profile["hosts"] == len(expected) > 8  # IPv4 and IPv6 (link-local, multicast)
    assert sum(profile["protocols"].values()) == 3000
    assert profile["protocols"]["TCP"] > 0


def test_one_conversation_of_one_protocol_is_few_hosts_and_one_protocol(tmp_path: Path) -> None:
    path = tmp_path / "pair.pcap"
    wrpcap(str(path), [Ether() / IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=5000 + i % 7,
                                                                         dport=53)
                       for i in range(500)])
    meta = {**GOOD, **traffic_profile([read_capture(path)[0]])}
    assert meta["hosts"] == 2 and meta["protocols"] == {"UDP": 500}
    assert checks(meta) == ["few hosts", "one protocol"]
    why = {c.check: c.why for c in concerns(meta, 0.999)}
    assert "only 2 IP addresses" in why["few hosts"]
    assert "100.0% of the packets are UDP" in why["one protocol"]


def test_each_check_starts_at_its_limit() -> None:
    limits = Limits()
    assert checks(GOOD) == []
    cases = [
        ({"packets": limits.min_packets - 1}, "little traffic"),
        ({"time_span": {"seconds": limits.min_seconds - 1}}, "short capture"),
        ({"hosts": limits.min_hosts - 1}, "few hosts"),
        ({"protocols": {"TCP": 99, "UDP": 1}}, "one protocol"),
    ]
    for change, name in cases:
        assert checks({**GOOD, **change}) == [name], change
    for change, name in [({"best_val_loss": 0.2, "history": [{"train_loss": 0.19}]},
                          "high validation loss"),
                         ({"history": [{"train_loss": 0.005}]}, "validation far above training"),
                         ({"calibration_packets": 9_000}, "unstable calibration")]:
        assert checks({**GOOD, "metrics": {**GOOD["metrics"], **change}}) == [name], change
    # the same held-back packets support a lower threshold: 33,792 x 1e-4 is 3 packets
    assert checks(GOOD, 0.9999) == ["unstable calibration"]
    assert checks({**GOOD, "packets": limits.min_packets, "hosts": limits.min_hosts}) == []


def test_metadata_without_a_figure_is_not_judged_on_it() -> None:
    assert checks({}) == []
    assert checks({"packets": 500}) == ["little traffic"]
