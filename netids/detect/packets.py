"""Decoded packets as numpy columns, and helpers that turn column values into text.

A missing field (no TCP header, no IP layer, a header cut short) is ``-1`` in the signed
integer columns and ``0`` in the address columns; :data:`FLAG_*` bits in ``status`` say why.
Addresses are 128-bit, held as two uint64 halves; IPv4 is stored IPv4-mapped
(``::ffff:a.b.c.d``) so one column pair serves both families.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, fields

import numpy as np

# status bits
FLAG_L2 = 1 << 0  # link layer understood
FLAG_L3 = 1 << 1  # network layer (IPv4, IPv6 or ARP) decoded
FLAG_L4 = 1 << 2  # transport header (TCP, UDP, ICMP, ICMPv6) decoded
FLAG_TRUNCATED = 1 << 3  # a header was cut short by the capture length
FLAG_MALFORMED = 1 << 4  # a header field is impossible (bad IHL, version, lengths)
FLAG_UNSUPPORTED_LINK = 1 << 5  # link type the decoder does not read (802.11, ...)
FLAG_FRAGMENT = 1 << 6  # an IP fragment other than the first: no transport header
FLAG_IP_OPTIONS = 1 << 7  # IPv4 options or IPv6 extension headers present
FLAG_SNAPPED = 1 << 8  # fewer bytes captured than were on the wire

STATUS_NAMES = {
    FLAG_TRUNCATED: "truncated",
    FLAG_MALFORMED: "malformed",
    FLAG_UNSUPPORTED_LINK: "unsupported link type",
    FLAG_FRAGMENT: "fragment",
    FLAG_IP_OPTIONS: "IP options",
}

ETHERTYPE_IPV4 = 0x0800
ETHERTYPE_ARP = 0x0806
ETHERTYPE_IPV6 = 0x86DD
PROTO_ICMP, PROTO_TCP, PROTO_UDP, PROTO_ICMPV6 = 1, 6, 17, 58
IPV4_MAPPED_HI = 0
IPV4_MAPPED_LO = 0xFFFF_0000_0000


@dataclass(frozen=True, slots=True)
class PacketBatch:
    """One row per frame of a :class:`~netids.detect.frames.FrameBatch`, same order."""

    ts: np.ndarray  # float64, seconds since the epoch
    length: np.ndarray  # int32, length on the wire
    status: np.ndarray  # uint16, FLAG_* bits
    ethertype: np.ndarray  # int32, network protocol (0x0800, 0x86DD, 0x0806, ...), -1 none
    vlan: np.ndarray  # int32, outermost 802.1Q VLAN id, -1 none
    src_mac: np.ndarray  # uint64, 48-bit source MAC, 0 none
    dst_mac: np.ndarray  # uint64, 48-bit destination MAC, 0 none
    ip_version: np.ndarray  # int8, 4, 6 or -1
    proto: np.ndarray  # int16, IP protocol / IPv6 final next header, -1 none
    ttl: np.ndarray  # int16, IPv4 TTL or IPv6 hop limit, -1 none
    src_hi: np.ndarray  # uint64, source address (IP, or ARP sender IP), high half
    src_lo: np.ndarray  # uint64, low half
    dst_hi: np.ndarray  # uint64, destination address (IP, or ARP target IP), high half
    dst_lo: np.ndarray  # uint64, low half
    frag: np.ndarray  # int32, IP fragment offset in 8-byte units, -1 none
    sport: np.ndarray  # int32, TCP/UDP source port, -1 none
    dport: np.ndarray  # int32, TCP/UDP destination port, -1 none
    tcp_flags: np.ndarray  # int16, 9 TCP flag bits (FIN=1 ... NS=256), -1 none
    window: np.ndarray  # int32, TCP window, -1 none
    udp_len: np.ndarray  # int32, UDP length field, -1 none
    icmp_type: np.ndarray  # int16, ICMP / ICMPv6 type, -1 none
    icmp_code: np.ndarray  # int16, ICMP / ICMPv6 code, -1 none
    arp_op: np.ndarray  # int16, ARP opcode, -1 none
    arp_sha: np.ndarray  # uint64, ARP sender hardware address, 0 none
    payload: np.ndarray  # int32, transport payload bytes (IP payload when no transport), -1 none
    ip_len: np.ndarray  # int32, IP packet length (IPv4 total length, IPv6 40 + payload), -1 none
    seq: np.ndarray  # int64, TCP sequence number, -1 none
    payload_at: np.ndarray  # int32, TCP/UDP payload's offset in the captured frame, -1 none

    def __len__(self) -> int:
        return len(self.ts)

    def take(self, idx: np.ndarray | slice) -> PacketBatch:
        """The rows selected by ``idx`` (an index array, mask or slice)."""
        return PacketBatch(**{f.name: getattr(self, f.name)[idx] for f in fields(self)})

    @classmethod
    def concat(cls, batches: list[PacketBatch]) -> PacketBatch:
        return cls(
            **{f.name: np.concatenate([getattr(b, f.name) for b in batches]) for f in fields(cls)}
        )

    def columns(self) -> dict[str, np.ndarray]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


COLUMNS = tuple(f.name for f in fields(PacketBatch))


def format_ip(hi: int, lo: int) -> str:
    """Text form of an address column pair; '' when absent.

    >>> format_ip(0, 0xFFFF_0A00_0001)
    '10.0.0.1'
    >>> format_ip(0x20010DB8 << 32, 1)
    '2001:db8::1'
    """
    hi, lo = int(hi), int(lo)
    if hi == 0 and lo == 0:
        return ""
    if hi == IPV4_MAPPED_HI and (lo >> 32) == 0xFFFF:
        # as ipaddress writes it, 20 times faster: a spoofed flood formats every packet's
        v4 = lo & 0xFFFF_FFFF
        return f"{v4 >> 24}.{(v4 >> 16) & 255}.{(v4 >> 8) & 255}.{v4 & 255}"
    return str(ipaddress.IPv6Address((hi << 64) | lo))


def is_ip(text: str) -> bool:
    """Whether ``text`` is an IPv4 or IPv6 address.

    >>> is_ip("10.0.0.1"), is_ip("fe80::1"), is_ip("02:00:00:00:00:01")
    (True, True, False)
    """
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def parse_ip(text: str) -> tuple[int, int]:
    """Column pair of an address written as text (the inverse of :func:`format_ip`).

    >>> parse_ip("10.0.0.1") == (0, 0xFFFF_0A00_0001)
    True
    """
    addr = ipaddress.ip_address(text)
    if addr.version == 4:
        return IPV4_MAPPED_HI, IPV4_MAPPED_LO | int(addr)
    value = int(addr)
    return value >> 64, value & 0xFFFF_FFFF_FFFF_FFFF


def format_mac(value: int) -> str:
    """'aa:bb:cc:dd:ee:ff', or '' when absent.

    >>> format_mac(0x0200_0000_0001)
    '02:00:00:00:00:01'
    """
    value = int(value)
    if value == 0:
        return ""
    return ":".join(f"{(value >> s) & 0xFF:02x}" for s in range(40, -8, -8))


TCP_FLAG_LETTERS = "FSRPAUECN"


def format_tcp_flags(flags: int) -> str:
    """Flag letters in scapy's order: 'S', 'SA', 'FA', ...; '' when absent.

    >>> format_tcp_flags(0x12)
    'SA'
    """
    flags = int(flags)
    if flags < 0:
        return ""
    return "".join(c for i, c in enumerate(TCP_FLAG_LETTERS) if flags >> i & 1)


PROTO_NAMES = {1: "ICMP", 2: "IGMP", 6: "TCP", 17: "UDP", 47: "GRE", 50: "ESP", 58: "ICMPv6",
               132: "SCTP"}


def protocol_name(ethertype: int, proto: int) -> str:
    """A short protocol label for people: 'TCP', 'UDP', 'ARP', 'IPv6', 'proto 89', ...

    >>> protocol_name(0x0800, 6), protocol_name(0x0806, -1), protocol_name(-1, -1)
    ('TCP', 'ARP', 'other')
    """
    if ethertype == ETHERTYPE_ARP:
        return "ARP"
    if proto >= 0:
        return PROTO_NAMES.get(int(proto), f"proto {int(proto)}")
    if ethertype == ETHERTYPE_IPV4:
        return "IPv4"
    if ethertype == ETHERTYPE_IPV6:
        return "IPv6"
    return "other"


def summary(batch: PacketBatch, i: int) -> str:
    """One line describing packet ``i`` of ``batch``, like tcpdump's (plain text, not HTML)."""
    src = format_ip(batch.src_hi[i], batch.src_lo[i]) or format_mac(batch.src_mac[i])
    dst = format_ip(batch.dst_hi[i], batch.dst_lo[i]) or format_mac(batch.dst_mac[i])
    name = protocol_name(int(batch.ethertype[i]), int(batch.proto[i]))
    if batch.sport[i] >= 0:
        src, dst = f"{src}:{batch.sport[i]}", f"{dst}:{batch.dport[i]}"
    parts = [f"{name} {src} > {dst}".strip(), f"len {batch.length[i]}"]
    if batch.tcp_flags[i] >= 0:
        parts.append(f"flags [{format_tcp_flags(batch.tcp_flags[i])}]")
    if batch.icmp_type[i] >= 0:
        parts.append(f"type {batch.icmp_type[i]} code {batch.icmp_code[i]}")
    if batch.arp_op[i] >= 0:
        op = {1: "who-has", 2: "is-at"}.get(int(batch.arp_op[i]), f"op {batch.arp_op[i]}")
        parts.append(f"{op} {format_mac(batch.arp_sha[i])}")
    if batch.ttl[i] >= 0:
        parts.append(f"ttl {batch.ttl[i]}")
    flags = [text for bit, text in STATUS_NAMES.items() if batch.status[i] & bit]
    if flags:
        parts.append("(" + ", ".join(flags) + ")")
    return ", ".join(parts)
