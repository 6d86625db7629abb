"""Decoder behaviour on crafted frames, hostile input and shared captures."""

from __future__ import annotations

import random

import numpy as np
from scapy.all import (
    ARP,
    ICMP,
    IP,
    TCP,
    UDP,
    CookedLinux,
    Dot1Q,
    Ether,
    ICMPv6EchoRequest,
    IPv6,
    IPv6ExtHdrFragment,
    IPv6ExtHdrHopByHop,
    fuzz,
)

from netids.detect.decode import decode
from netids.detect.frames import LINKTYPE_ETHERNET, LINKTYPE_LINUX_SLL, LINKTYPE_RAW, FrameBatch
from netids.detect.packets import (
    FLAG_FRAGMENT,
    FLAG_L4,
    FLAG_MALFORMED,
    FLAG_SNAPPED,
    FLAG_TRUNCATED,
    FLAG_UNSUPPORTED_LINK,
    format_ip,
    format_mac,
    summary,
)


def one(frame: bytes, linktype: int = LINKTYPE_ETHERNET, wirelen: int | None = None):
    batch = FrameBatch.from_frames([frame], [1.5], linktype=linktype,
                                   wirelen=None if wirelen is None else [wirelen])
    return decode(batch)


def test_tcp_over_vlan_reads_every_field() -> None:
    frame = bytes(Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / Dot1Q(vlan=42)
                  / IP(src="10.0.0.1", dst="10.0.0.2", ttl=33)
                  / TCP(sport=4444, dport=22, flags="SA", window=1234) / b"hello")
    p = one(frame)
    assert (p.vlan[0], p.ttl[0], p.sport[0], p.dport[0]) == (42, 33, 4444, 22)
    assert (p.tcp_flags[0], p.window[0], p.payload[0]) == (0x12, 1234, 5)
    assert format_ip(p.src_hi[0], p.src_lo[0]) == "10.0.0.1"
    assert format_mac(p.src_mac[0]) == "02:00:00:00:00:01"
    assert "TCP 10.0.0.1:4444 > 10.0.0.2:22" in summary(p, 0)


def test_length_is_the_wire_length_when_a_snaplen_cut_the_frame() -> None:
    frame = bytes(Ether() / IP(dst="10.0.0.2") / UDP(sport=1, dport=2) / (b"x" * 1000))
    p = one(frame[:96], wirelen=len(frame))
    assert p.length[0] == len(frame)
    assert p.udp_len[0] == 1008 and p.payload[0] == 1000
    assert p.status[0] & FLAG_SNAPPED


def test_truncated_transport_header_is_flagged_not_guessed() -> None:
    frame = bytes(Ether() / IP(dst="10.0.0.2") / TCP(dport=80))
    p = one(frame[:14 + 20 + 10])
    assert p.status[0] & FLAG_TRUNCATED
    assert p.ttl[0] == 64 and p.sport[0] == -1 and p.tcp_flags[0] == -1


def test_non_first_fragment_has_no_ports() -> None:
    frame = bytes(Ether() / IP(dst="10.0.0.2", frag=100, proto=6) / (b"\x00" * 40))
    p = one(frame)
    assert p.status[0] & FLAG_FRAGMENT and p.frag[0] == 100 and p.sport[0] == -1


def test_ipv6_extension_headers_lead_to_the_transport() -> None:
    first = Ether() / IPv6(src="2001:db8::1", dst="2001:db8::2") / IPv6ExtHdrHopByHop() \
        / IPv6ExtHdrFragment(offset=0, m=1) / UDP(sport=53, dport=5353)
    later = Ether() / IPv6(dst="2001:db8::2") / IPv6ExtHdrFragment(offset=9, nh=17) / (b"x" * 16)
    p = decode(FrameBatch.from_frames([bytes(first), bytes(later)], [0.0, 0.1]))
    assert (p.proto[0], p.sport[0], p.dport[0]) == (17, 53, 5353)
    assert format_ip(p.src_hi[0], p.src_lo[0]) == "2001:db8::1"
    assert p.frag[1] == 9 and p.sport[1] == -1 and p.status[1] & FLAG_FRAGMENT


def test_icmpv6_arp_cooked_and_raw_links() -> None:
    frames = [
        bytes(Ether() / IPv6() / ICMPv6EchoRequest()),
        bytes(Ether(src="02:00:00:00:00:09", dst="02:00:00:00:00:01")
              / ARP(op=2, hwsrc="02:00:00:00:00:09", psrc="10.0.0.1", pdst="10.0.0.7")),
        bytes(CookedLinux(proto=0x0800) / IP(dst="10.0.0.3") / ICMP(type=8)),
        bytes(IP(dst="10.0.0.4") / UDP(dport=7)),
    ]
    link = [LINKTYPE_ETHERNET, LINKTYPE_ETHERNET, LINKTYPE_LINUX_SLL, LINKTYPE_RAW]
    p = decode(FrameBatch.from_frames(frames, [0, 1, 2, 3], linktype=link))
    assert (p.icmp_type[0], p.proto[0]) == (128, 58)
    assert p.arp_op[1] == 2 and format_mac(p.arp_sha[1]) == "02:00:00:00:00:09"
    assert format_ip(p.src_hi[1], p.src_lo[1]) == "10.0.0.1"
    assert (p.icmp_type[2], p.dport[3]) == (8, 7)
    assert (p.status[[0, 2, 3]] & FLAG_L4).all()


def test_bad_ip_header_length_is_malformed() -> None:
    frame = bytearray(bytes(Ether() / IP(dst="10.0.0.2") / TCP()))
    frame[14] = 0x43  # IHL 3: shorter than the fixed header
    p = one(bytes(frame))
    assert p.status[0] & FLAG_MALFORMED and p.sport[0] == -1


def test_unsupported_link_type_still_gets_a_row() -> None:
    p = one(b"\x00" * 40, linktype=127)
    assert len(p) == 1 and p.status[0] & FLAG_UNSUPPORTED_LINK and p.proto[0] == -1


def _build_fuzzed(template):
    """A fuzzed frame; scapy itself sometimes fails to build a fuzzed field, so draw again."""
    for _ in range(20):
        try:
            return bytes(fuzz(template))
        except (TypeError, ValueError, OverflowError):
            continue
    return bytes(template)


def test_hundred_thousand_fuzzed_and_random_frames_never_raise() -> None:
    rng = random.Random(7)
    templates = [
        Ether() / IP() / TCP(), Ether() / IP() / UDP(), Ether() / IP() / ICMP(),
        Ether() / IPv6() / TCP(), Ether() / IPv6() / IPv6ExtHdrFragment() / UDP(),
        Ether() / Dot1Q() / IP() / TCP(), Ether() / ARP(), CookedLinux() / IP() / UDP(),
    ]
    random.seed(7)  # scapy's fuzz() draws from the global generator
    frames: list[bytes] = []
    for _ in range(200):
        for template in templates:
            frames.append(_build_fuzzed(template))
    while len(frames) < 100_000:
        size = rng.choice((0, 1, 13, 14, 20, 34, 54, 60, 64, 128, 1514))
        frames.append(rng.randbytes(size))
    rng.shuffle(frames)
    total = 0
    for link in (LINKTYPE_ETHERNET, LINKTYPE_LINUX_SLL, LINKTYPE_RAW, 276, 0, 127):
        for lo in range(0, len(frames), 4096):
            chunk = frames[lo:lo + 4096]
            p = decode(FrameBatch.from_frames(chunk, np.zeros(len(chunk)), linktype=link))
            assert len(p) == len(chunk)
            total += len(p)
    assert total == 6 * len(frames)
