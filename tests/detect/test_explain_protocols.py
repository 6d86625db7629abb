"""Kinds and explanations fit the packet's protocol (issue #17 item 5): the shipped model on
real attack captures never explains an ARP or ICMP packet with ports, SYNs or connections,
and still tells a TCP port scan by its ports."""

from __future__ import annotations

import csv
import io
import re
from collections import Counter
from pathlib import Path

import pytest

from netids.commands.score import score_file, scoring_pool
from netids.detect.pipeline import Pipeline
from netids.training.checkpoint import load_detector

# words that belong to another protocol than the packet's
FOREIGN_WORDS = {
    "ARP": re.compile(r"port|SYN|TCP|UDP|ICMP|connection|TTL"),
    "ICMP": re.compile(r"port|SYN|TCP|UDP length|connection|ARP"),
}


def _anomalies(capture: Path, model: Path) -> list[dict[str, str]]:
    pipeline, out = Pipeline(load_detector(model)), io.StringIO()
    with scoring_pool(pipeline, 0) as pool:
        assert score_file(capture, out, pipeline, pool) is None
    return [r for r in csv.DictReader(io.StringIO(out.getvalue())) if r["anomaly"] == "1"]


@pytest.mark.parametrize("capture, protocol", [
    ("attack/pcaphunt__hs-icmpScan.pcap", "ICMP"),  # ping sweep
    ("attack/slips__test8-malicious.pcap", "ARP"),  # ARP scan
])
def test_a_sweep_of_arp_or_icmp_is_told_in_its_own_protocol_s_words(
        shared_data: Path, trained_model: Path, capture: str, protocol: str) -> None:
    rows = [r for r in _anomalies(shared_data / capture, trained_model)
            if r["protocol"] == protocol]
    assert len(rows) > 100, f"the shipped model flags the sweep's {protocol} packets"
    wrong = [r["explanation"] for r in rows if FOREIGN_WORDS[protocol].search(r["explanation"])]
    assert not wrong, wrong[:3]
    kinds = Counter(r["kind"] for r in rows)
    assert kinds.most_common(1)[0][0] == "host sweep", kinds
    assert "new hosts/s contacted by this source" in rows[-1]["explanation"]


def test_a_tcp_port_scan_is_still_told_by_its_ports(shared_data: Path,
                                                    trained_model: Path) -> None:
    rows = _anomalies(shared_data / "attack/evilfingers__TCP_SYN_SCAN.pcap", trained_model)
    probes = [r for r in rows if r["protocol"] == "TCP" and r["tcp_flags"] == "S"]
    assert len(probes) > 900
    told = Counter("new destination ports/s" in r["explanation"] for r in probes)
    assert told[True] > 0.9 * len(probes), told
    assert Counter(r["kind"] for r in probes).most_common(1)[0][0] == "port scan"
