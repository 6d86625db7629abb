"""Each capture of a mix gets its own addresses; rewritten frames keep valid checksums."""

from __future__ import annotations

import glob
import ipaddress
from pathlib import Path

import numpy as np
import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import ICMPv6EchoRequest, IPv6, IPv6ExtHdrHopByHop
from scapy.layers.l2 import ARP, Dot1Q, Ether

from netids.capture.pcapfile import read_batches, write_pcap
from netids.detect.context import FEATURE_NAMES
from netids.lab.mixing import mix, read_labels
from netids.lab.readdress import AddressSpace, address_fields, capture_addresses, rewrite
from netids.training.data import read_capture

A4, B4, C4 = "192.168.1.10", "192.168.1.1", "192.168.7.10"
A6, B6, C6 = "fd00:1:2:3::10", "fd00:1:2:3::1", "fd00:1:2:9::10"


def _b(address: str) -> bytes:
    return ipaddress.ip_address(address).packed


MAPPING = {_b(A4): _b(C4), _b(A6): _b(C6)}
FRAMES = {
    "TCP": Ether() / IP(src=A4, dst=B4) / TCP(sport=40000, dport=80, flags="S"),
    "UDP": Ether() / IP(src=B4, dst=A4) / UDP(sport=53, dport=40000) / b"answer",
    "VLAN ICMP": Ether() / Dot1Q(vlan=5) / IP(src=A4, dst=B4, options=[]) / ICMP(),
    "IPv6 TCP": Ether() / IPv6(src=A6, dst=B6) / TCP(dport=443, flags="S"),
    "IPv6 ICMPv6": Ether() / IPv6(src=B6, dst=A6) / ICMPv6EchoRequest(data=b"x" * 9),
    "IPv6 hop-by-hop UDP": Ether() / IPv6(src=A6, dst=B6) / IPv6ExtHdrHopByHop() / UDP(),
}


@pytest.mark.parametrize("name", list(FRAMES))
def test_rewrite_moves_addresses_and_keeps_checksums_valid(name):
    frame = bytes(FRAMES[name])
    new = Ether(rewrite(frame, 1, MAPPING))
    ip = new[IP] if IP in new else new[IPv6]
    assert {ip.src, ip.dst} & {C4, C6} and not {ip.src, ip.dst} & {A4, A6}
    for layer in (IP, TCP, UDP, ICMP):
        if layer in new:
            fresh = new.copy()
            del fresh[layer].chksum
            assert Ether(bytes(fresh))[layer].chksum == new[layer].chksum, layer.__name__
    if ICMPv6EchoRequest in new:
        fresh = new.copy()
        del fresh[ICMPv6EchoRequest].cksum
        assert Ether(bytes(fresh))[ICMPv6EchoRequest].cksum == new[ICMPv6EchoRequest].cksum


def test_udp_without_checksum_keeps_none_and_raw_ip_and_arp_are_rewritten():
    udp = IP(src=A4, dst=B4) / UDP(sport=1, dport=2)
    frame = bytearray(bytes(udp))
    frame[26:28] = b"\x00\x00"  # "no checksum" (IPv4 allows it)
    new = IP(rewrite(bytes(frame), 101, MAPPING))  # raw IP link type
    assert (new.src, new[UDP].chksum) == (C4, 0)
    arp = bytes(Ether() / ARP(op=2, psrc=A4, pdst=B4))
    assert address_fields(arp, 1) == [(28, 4), (38, 4)]
    assert Ether(rewrite(arp, 1, MAPPING))[ARP].psrc == C4
    assert rewrite(arp[:30], 1, MAPPING) == arp[:30]  # a cut address is left as it is


def test_a_capture_reusing_addresses_moves_as_a_whole_within_each_class():
    space = AddressSpace()
    first = {_b(a) for a in ("192.168.1.1", "192.168.1.10", "8.8.8.8", "224.0.0.251")}
    assert space.claim(first) == (0, {})
    second = {_b(a) for a in ("192.168.1.1", "192.168.3.4", "8.8.8.8", "0.0.255.0",
                              "224.0.0.251", "255.255.255.255", "0.0.0.0", "fe80::1")}
    offset, mapping = space.claim(second)
    # offset 1 would turn the reserved 0.0.255.0 into 0.0.0.0 (unspecified): 2 is the first
    # that keeps every class
    assert offset == 2
    moved = {str(ipaddress.ip_address(a)): str(ipaddress.ip_address(b))
             for a, b in mapping.items()}
    assert moved == {"192.168.1.1": "192.168.3.1", "192.168.3.4": "192.168.5.4",
                     "8.8.8.8": "8.8.10.8", "0.0.255.0": "0.0.1.0", "fe80::1": "fe80:0:0:2::1"}
    third = {_b("192.168.3.1")}  # taken by the second capture's move
    assert space.claim(third)[0] == 1


def test_mixed_captures_keep_their_frames_apart_but_move_clashing_ones(tmp_path):
    """Two networks with the same addresses behind different MACs: mixed as recorded, one IP
    would hop between MACs (ip_mac_moved, the ARP-spoofing sign); each gets its own."""
    def lan(path: Path, mac: str) -> None:
        frames = []
        for i in range(40):
            p = Ether(src=mac, dst="02:00:00:00:00:99") / IP(src=A4, dst=B4) / UDP(dport=53)
            frames.append((1.0 + i, bytes(p), len(p)))
        write_pcap(path, frames)

    lan(tmp_path / "a.pcap", "02:00:00:00:00:01")
    lan(tmp_path / "b.pcap", "02:00:00:00:00:02")
    out = tmp_path / "mix.pcap"
    report = mix([tmp_path / "a.pcap", tmp_path / "b.pcap"], [], out, tmp_path / "m.csv")
    assert report.readdressed == {str(tmp_path / "b.pcap"): 1}
    _, feats = read_capture(out)
    assert feats[:, FEATURE_NAMES.index("ip_mac_moved")].max() == 0.0
    got = capture_addresses(*_frames(out))
    assert got == {_b(a) for a in (A4, B4, "192.168.2.10", "192.168.2.1")}


def _frames(path: Path) -> tuple[list[bytes], list[int]]:
    frames, linktypes = [], []
    for b in read_batches(path):
        frames.extend(b.frame(i) for i in range(len(b)))
        linktypes.extend(b.linktype.tolist())
    return frames, linktypes


def test_mixing_the_shared_benign_captures_makes_no_address_hop_between_macs(tmp_path,
                                                                             shared_data):
    """Alone, the benign captures show 3 packets whose IP changed MAC (IPv6 neighbour
    discovery); mixed without readdressing, the last 30 % showed 264, all false ARP-spoofing
    signs. Now the mix shows no more than the captures alone."""
    paths = sorted(Path(p) for p in glob.glob(str(shared_data / "benign" / "*")))
    report = mix(paths, [], tmp_path / "b.pcap", tmp_path / "b.csv", normal_part=(0.7, 1.0))
    assert len(report.readdressed) >= 5
    moved = FEATURE_NAMES.index("ip_mac_moved")
    _, feats = read_capture(tmp_path / "b.pcap")
    alone = sum(int((read_capture(p)[1][:, moved] > 0).sum()) for p in paths)
    assert int((feats[:, moved] > 0).sum()) <= alone
    index, label, _ = read_labels(tmp_path / "b.csv")
    assert len(index) == len(feats) and not label.any()


def test_readdressed_real_frames_keep_their_checksums(tmp_path, shared_data):
    """The same real capture mixed twice: the copy moves, and every checksum scapy finds
    valid in the original is valid in the moved copy."""
    wiki = shared_data / "benign" / "zeek__wikipedia.pcap"
    out = tmp_path / "twice.pcap"
    report = mix([wiki, wiki], [], out, tmp_path / "twice.csv")
    assert report.readdressed == {str(wiki): 1}
    original, _ = _frames(wiki)
    mixed, _ = _frames(out)
    moved = [f for f in mixed if f not in set(original)]
    # every frame of the copy that carries an address moves (here none has only multicast)
    assert len(moved) == sum(1 for f in original if address_fields(f, 1)) == 132
    checked = 0
    for frame in moved:
        pkt = Ether(frame)
        for layer in (IP, TCP, UDP):
            if layer in pkt and pkt[layer].chksum is not None:
                fresh = pkt.copy()
                del fresh[layer].chksum
                assert Ether(bytes(fresh))[layer].chksum == pkt[layer].chksum
                checked += 1
    assert checked > 200
    assert np.all(np.diff(np.concatenate([b.ts for b in read_batches(out)])) >= 0)


def test_random_and_cut_frames_never_raise_and_keep_their_length():
    """mix reads whatever the captures hold: garbage and frames cut at any byte are left
    readable, never an exception."""
    rng = np.random.default_rng(7)
    everything = {a: bytes(reversed(a)) for a in map(_b, (A4, B4, A6, B6))}
    frames = [bytes(rng.integers(0, 256, rng.integers(0, 120), dtype=np.uint8))
              for _ in range(20000)]
    kinds = (b"\x08\x00", b"\x86\xdd", b"\x08\x06", b"\x81\x00")  # then random headers
    frames += [f[:12] + kinds[i % 4] + f[14:] for i, f in enumerate(frames) if len(f) > 14]
    for frame in [*map(bytes, FRAMES.values()), bytes(Ether() / ARP(psrc=A4, pdst=B4))]:
        frames += [frame[:cut] for cut in range(len(frame) + 1)]
    for frame in frames:
        for linktype in (1, 101, 113):
            out = rewrite(frame, linktype, everything)
            assert len(out) == len(frame)
            assert all(a + n <= len(frame) for a, n in address_fields(frame, linktype))
