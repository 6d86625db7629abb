"""Payload checks on the shared real captures: where each packet's payload starts, every
attack capture raising its kind with its evidence, nothing on any benign capture, and only
labelled attack packets flagged in the dev mix."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from scapy.layers.inet import TCP, UDP
from scapy.packet import NoPayload, Padding

from netids.capture.pcapfile import read_batches
from netids.detect.decode import decode
from netids.detect.payload import PayloadFinding, PayloadInspector
from tests.support import dissect

HTTP_CAPTURES = ("benign/zeek__wikipedia.pcap", "benign/sanders__http_ip4and6.pcapng",
                 "benign/sanders__http_espn.pcapng", "attack/zeek__heartbleed.pcap",
                 "attack/sanders__http_dvwa_sqlinjection.pcapng", "benign/sanders__dns.pcap")


def findings_of(path: Path) -> list[PayloadFinding]:
    inspector, found = PayloadInspector(), []
    for frames in read_batches(path, 4096):
        found += inspector.inspect(frames, decode(frames))
    return found


def files_labelled(data: Path, label: str) -> list[Path]:
    with open(data / "MANIFEST.tsv", newline="") as f:
        return [data / row["file"] for row in csv.DictReader(f, delimiter="\t")
                if row["label"] == label]


@pytest.mark.parametrize("name", HTTP_CAPTURES)
def test_payload_at_is_where_scapy_finds_the_transport_payload(name: str,
                                                               shared_data: Path) -> None:
    checked = 0
    for frames in read_batches(shared_data / name):
        packets = decode(frames)
        for i in range(len(frames)):
            pkt = dissect(frames.frame(i), int(frames.linktype[i]))
            layer = pkt.getlayer(TCP) or pkt.getlayer(UDP)
            if layer is None or int(packets.payload_at[i]) < 0:
                continue
            # the bytes scapy dissected the layer above from (a DNS message, HTTP, raw data)
            above = layer.payload
            want = b"" if isinstance(above, (NoPayload, Padding)) else bytes(above.original)
            at = int(packets.payload_at[i])
            size = min(int(packets.payload[i]), len(frames.frame(i)) - at)
            assert frames.frame(i)[at : at + size] == want[:size], f"packet {i}"
            checked += bool(want)
    assert checked > 0


def test_sql_injection_in_dvwa_is_a_web_attack_quoting_the_parameter(shared_data: Path) -> None:
    found = findings_of(shared_data / "attack" / "sanders__http_dvwa_sqlinjection.pcapng")
    assert [(f.kind, f.what, f.src, f.dst, f.dport) for f in found] == [
        ("web_attack", "SQL injection", "10.2.2.101", "10.2.2.104", 80)] * 3
    assert found[0].why == """SQL injection in the parameter "id": "%' or '0'='0\""""
    assert "union select null, version()" in found[1].why


def test_password_dump_by_sql_injection_is_found(shared_data: Path) -> None:
    (f,) = findings_of(shared_data / "attack" / "sanders__http_dvwa_sqlinjection_passwords.pcapng")
    assert f.what == "SQL injection" and "union select null, concat(first_name" in f.why
    assert f.why.endswith('..."')  # the long parameter is cut


def test_directory_traversal_in_dvwa_is_found(shared_data: Path) -> None:
    (f,) = findings_of(shared_data / "attack" / "sanders__http_dvwa_directorytraversal.pcapng")
    assert (f.kind, f.what, f.severity) == ("web_attack", "path traversal", "high")
    assert "?page=../../../../../../etc/passwd" in f.why


def test_heartbleed_attempt_and_its_success_are_found(shared_data: Path) -> None:
    (tried,) = findings_of(shared_data / "attack" / "zeek__heartbleed.pcap")
    assert (tried.kind, tried.severity, tried.src, tried.dst, tried.dport) == (
        "heartbleed", "high", "173.203.79.216", "162.219.2.166", 443)
    assert "declaring 16,365 bytes of payload in a 16,368-byte record" in tried.why
    request, answer = findings_of(shared_data / "attack" / "zeek__heartbleed-success.pcap")
    assert (request.severity, answer.severity) == ("high", "critical")
    # the answer is the attack's doing: same attacker and server, so it escalates one event
    assert (answer.src, answer.dst, answer.dport) == (request.src, request.dst, 443)
    assert "answered a Heartbleed request" in answer.why


def test_no_benign_capture_raises_a_payload_finding(shared_data: Path) -> None:
    benign = files_labelled(shared_data, "benign")
    assert len(benign) >= 45
    inspected = 0
    for path in benign:
        inspector = PayloadInspector()
        for frames in read_batches(path, 4096):
            assert inspector.inspect(frames, decode(frames)) == [], path.name
        inspected += inspector.stats.parsed
    assert inspected > 300  # they hold HTTP: the checks did read it


def test_in_the_dev_mix_only_labelled_attack_packets_are_flagged(shared_data: Path) -> None:
    with open(shared_data / "mixed_dev.labels.csv", newline="") as f:
        kinds = {int(r["index"]): r["attack_kind"] for r in csv.DictReader(f)}
    found = findings_of(shared_data / "mixed_dev.pcap")
    assert {(f.kind, kinds[f.index]) for f in found} == {
        ("web_attack", "web_attack"), ("heartbleed", "exploit")}
    assert len(found) == 8
