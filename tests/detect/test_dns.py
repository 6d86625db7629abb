"""Reading DNS messages from real captures (checked against scapy), hostile bytes, and the DNS
detectors' rules: RITA's counts, the encoded-name rule, NXDOMAIN bursts, learning, bounds."""

from __future__ import annotations

import random
from pathlib import Path

from netids.capture.pcapfile import read_batches
from netids.detect.behaviour_dns import DnsConfig, DnsDetector, registered_domain
from netids.detect.decode import decode
from netids.detect.dns import DnsReader, DnsRecord, parse
from netids.detect.dns_events import DnsEvents
from netids.detect.frames import FrameBatch
from tests.detect.test_behaviour_captures import files_of
from tests.support import dissect

DNS_FILES = ("sanders__dns_lab.pcapng", "sanders__dns.pcap", "sanders__dns_tcp.pcapng",
             "sanders__http_espn.pcapng", "zeek__wikipedia.pcap", "zeek__mapi.pcap",
             "iotlab__schlage-lock-01.pcap")


def read_file(path: Path, reader: DnsReader | None = None) -> list[DnsRecord]:
    reader = reader or DnsReader()
    return [r for frames in read_batches(path, 4096) for r in reader.read(frames, decode(frames))]


def query(i: int, name: str, client: str = "10.0.0.9", ts: float | None = None) -> DnsRecord:
    return DnsRecord(float(i) if ts is None else ts, client, "10.0.0.1", False, 0, 0, 1, name, i)


def test_every_dns_message_of_real_captures_reads_as_scapy_reads_it(shared_data: Path) -> None:
    checked = 0
    for name in DNS_FILES:
        path = shared_data / "benign" / name
        frames = {f.first_index + i: (f.frame(i), int(f.linktype[i]))
                  for f in read_batches(path, 4096) for i in range(len(f))}
        for r in read_file(path):
            dns = dissect(*frames[r.index])["DNS"]
            qname = dns.qd[0].qname.decode().rstrip(".").lower() if dns.qd else ""
            assert (r.response, r.opcode, r.rcode, r.name) == (
                bool(dns.qr), dns.opcode, dns.rcode, qname), (name, r.index)
            assert r.qtype == dns.qd[0].qtype
            checked += 1
    assert checked > 600


def test_dns_over_tcp_is_read_after_its_length_prefix(shared_data: Path) -> None:
    records = read_file(shared_data / "benign" / "sanders__dns_tcp.pcapng")
    assert [(r.index, r.response, r.name, r.qtype) for r in records] == [
        (0, False, "ripe.net", 255), (1, True, "ripe.net", 255), (5, False, "ripe.net", 255)]


def test_names_are_bounded_and_escaped() -> None:
    head = bytes.fromhex("123401000001000000000000")
    assert parse(head + b"\x04a.\"<\x03EXA\x00\x00\x01") == (False, 0, 0, "a\\x2e\\x22\\x3c.exa", 1)
    assert parse(head + b"\x3f" + b"a" * 63 + b"\x00\x00\x10")[3] == "a" * 63
    assert parse(head + b"\x40" + b"a" * 64 + b"\x00") is None  # a label over 63 bytes
    long_name = b"".join(b"\x3f" + b"b" * 63 for _ in range(4)) + b"\x00"  # 256 bytes
    assert parse(head + long_name) is None
    assert parse(head + b"\x01x\xc0\x0c\x00\x05") == (False, 0, 0, "x", 5)  # pointer: stop
    assert parse(head + b"\x05abc") is None  # label runs past the end
    assert parse(head + b"\x03abc\x00") == (False, 0, 0, "abc", 0)  # no type: 0


def test_random_and_truncated_payloads_never_raise(shared_data: Path) -> None:
    """Fuzz: real DNS frames cut at every length and with random bytes flipped, and random
    payloads sent to port 53, through the reader: no exception, bounded names."""
    rng = random.Random(7)
    real = [f.frame(i) for f in read_batches(
        shared_data / "benign" / "sanders__dns_lab.pcapng", 4096) for i in range(len(f))]
    frames: list[bytes] = []
    for data in real:
        for cut in range(14, len(data) + 1, 3):
            frames.append(data[:cut])
        for _ in range(20):
            b = bytearray(data)
            for _ in range(rng.randint(1, 8)):
                b[rng.randrange(42, len(b))] = rng.randrange(256)
            frames.append(bytes(b))
        base = data[:42]  # Ethernet + IPv4 + UDP header of a DNS packet
        frames += [base + rng.randbytes(rng.randint(0, 300)) for _ in range(20)]
    stamps = [1.0] * len(frames)
    reader = DnsReader()
    batch = FrameBatch.from_frames(frames, stamps)
    records = reader.read(batch, decode(batch))
    assert reader.stats.parsed > 1000 and reader.stats.malformed > 100
    assert all(len(r.name) <= 4 * 255 for r in records)
    for _ in range(20_000):
        parse(rng.randbytes(rng.randint(0, 80)))


def test_parsing_stops_at_max_parsed(shared_data: Path) -> None:
    reader = DnsReader(max_parsed=5)
    records = read_file(shared_data / "benign" / "sanders__dns_lab.pcapng", reader)
    assert len(records) == 5 and reader.stats.skipped == reader.stats.looked - 5 > 0


def test_benign_captures_raise_no_dns_alert(shared_data: Path) -> None:
    events, records = DnsEvents(), 0
    for path in files_of(shared_data, "benign"):
        found = read_file(path)
        records += len(found)
        opened, _ = events.update(found, now=0.0, threshold=0.999)
        assert opened == [], path.name
    assert records > 700 and events.alerts == 0


def test_rita_base_grades_and_suppression() -> None:
    """100 distinct names alert (low), 800 medium, 1000 high; between, one alert per hour.
    Past 128 names a key's count is a HyperLogLog estimate (about 2 %), refreshed every 8."""
    d = DnsDetector()
    alerts = d.update([query(i, f"host{i}.example.com") for i in range(1200)])
    assert [(a.kind, a.severity, a.source) for a in alerts] == [
        ("dns_tunnel", "low", "10.0.0.9"), ("dns_tunnel", "medium", "10.0.0.9"),
        ("dns_tunnel", "high", "10.0.0.9")]
    for alert, due in zip(alerts, (100, 800, 1000), strict=True):
        assert due <= alert.count <= due * 1.05 and abs(alert.last + 1 - due) <= due * 0.05
    assert alerts[0].count == 100 and alerts[0].last == 99.0  # exact up to 128
    why = alerts[0].why
    assert why.startswith(f"{alerts[0].count} distinct names under example.com asked from "
                          "10.0.0.9 in ")
    assert "e.g. host0, host1, host2" in why and "(looks encoded)" not in why


def test_encoded_names_alert_from_50() -> None:
    rng = random.Random(3)
    names = [f"{rng.randbytes(16).hex()}.t.evil.co.uk" for _ in range(60)]
    alerts = DnsDetector().update([query(i, n) for i, n in enumerate(names)])
    assert [(a.count, a.targets) for a in alerts] == [(50, ("evil.co.uk", "10.0.0.1"))]
    assert "(looks encoded)" in alerts[0].why and "34 characters" in alerts[0].why
    assert f"e.g. {names[0][:21]}..." in alerts[0].why  # labels truncated


def test_the_window_restarts_after_an_hour() -> None:
    d = DnsDetector()
    early = [query(i, f"h{i}.example.com", ts=float(i)) for i in range(90)]
    late = [query(i, f"g{i}.example.com", ts=3700.0 + i) for i in range(90)]
    assert d.update(early + late) == []


def test_a_tunnel_spread_over_clients_is_found_per_domain() -> None:
    records = [query(i, f"h{i}.example.com", client=f"10.0.0.{10 + i % 5}") for i in range(120)]
    alerts = DnsDetector().update(records)
    assert [(a.source, a.count) for a in alerts] == [("", 100)]
    assert "from 5 clients" in alerts[0].why
    (event,), _ = DnsEvents().update(records, now=120.0, threshold=0.999)
    assert (event.kind, event.src, event.src_count) == ("DNS tunnelling", "", 5)


def test_reverse_lookups_mdns_and_service_names_are_never_counted() -> None:
    names = ([f"{i}.2.0.192.in-addr.arpa" for i in range(200)]
             + [f"host{i}.local" for i in range(200)]
             + [f"s{i}._ipp._tcp.example.com" for i in range(200)])
    assert DnsDetector().update([query(i, n) for i, n in enumerate(names)]) == []


def test_learned_domains_are_left_out() -> None:
    learned = DnsDetector()
    learned.learn([query(i, f"e{i}.cdn.example.net") for i in range(30)])
    later = [query(i, f"x{i}.cdn.example.net") for i in range(150)]
    assert learned.update(later) == []
    assert len(DnsDetector().update(later)) == 1


def test_nxdomain_bursts_need_50_distinct_names_in_60_s() -> None:
    def nx(i: int, ts: float, name: str) -> DnsRecord:
        return DnsRecord(ts, "10.0.0.9", "10.0.0.1", True, 0, 3, 1, name, i)

    repeated = [nx(i, i * 0.1, "gone.example.com") for i in range(200)]
    slow = [nx(i, i * 2.0, f"q{i}.example.com") for i in range(100)]
    assert DnsDetector().update(repeated) == [] and DnsDetector().update(slow) == []
    burst = [nx(i, i * 0.5, f"{i:x}kq.example{i % 7}.com") for i in range(120)]
    (alert,) = DnsDetector().update(burst)
    assert (alert.kind, alert.severity, alert.count, alert.source) == (
        "nxdomain_burst", "medium", 50, "10.0.0.9")
    assert alert.why.startswith("50 distinct names answered NXDOMAIN (no such name) to "
                                "10.0.0.9 by 10.0.0.1 in 24 s")
    flood = [nx(i, i * 0.01, f"{i:x}kq.example.com") for i in range(3000)]
    assert [(a.severity, a.count) for a in DnsDetector().update(flood)] == [
        ("medium", 50), ("high", 250)]


def test_state_is_bounded() -> None:
    d = DnsDetector(DnsConfig(capacity=16))
    d.update([query(i, f"h.d{i}.com", client=f"10.1.{i // 250}.{i % 250}") for i in range(2000)])
    d.update([DnsRecord(i, f"10.2.{i // 250}.{i % 250}", "10.0.0.1", True, 0, 3, 1, "x.y.com", i)
              for i in range(2000)])
    assert len(d.pairs) == len(d.domains) == 16 and len(d.nx) == 512
    assert d.pairs.evicted == d.domains.evicted == 2000 - 16 and d.nx.evicted == 2000 - 512
    assert d.suppressor.last.evicted == 0  # no alert: nothing remembered


def test_registered_domains() -> None:
    assert [registered_domain(n) for n in (
        "a.b.c.example.com", "www.bbc.co.uk", "x.y.example.com.au", "a.co.com", "example",
        "x.gov.uk")] == ["example.com", "bbc.co.uk", "example.com.au", "co.com", "example",
                         "x.gov.uk"]


def test_held_back_evidence_grows_the_open_event() -> None:
    events = DnsEvents()
    records = [query(i, f"host{i}.example.com") for i in range(300)]
    (handed,), closed = events.update(records[:150], now=150.0, threshold=0.999)
    assert (handed.kind, handed.packets, closed) == ("DNS tunnelling", 100, [])
    assert events.update(records[150:], now=300.0, threshold=0.999) == ([], [])
    (final,) = events.flush()
    assert (final.id, final.first_seen, final.last_seen) == (handed.id, 0.0, 299.0)
    assert 290 <= final.packets <= 310 and final.explanation.startswith(f"{final.packets} ")
