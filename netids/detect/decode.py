"""Raw frames to :class:`~netids.detect.packets.PacketBatch` columns, vectorised over a batch.

Each header field of every frame is read with one numpy gather per batch, never with a
Python loop per packet, which is what makes over a million packets a second possible on one
core. Reads past a frame's captured bytes never happen: a field is only taken where its whole
header lies inside the frame (and inside the IP datagram's stated length, as scapy does);
otherwise it stays missing and the frame is flagged truncated or malformed. Decoding never
raises on frame content.

Layers: Ethernet (with up to two 802.1Q/802.1ad tags), Linux cooked v1/v2, raw IP, BSD
loopback; IPv4 (options, fragments), IPv6 (hop-by-hop, routing, destination options,
fragment and AH extension headers), ARP; TCP, UDP, ICMP, ICMPv6.
"""

from __future__ import annotations

import numpy as np

from netids.detect import frames as lt
from netids.detect.frames import FrameBatch
from netids.detect.packets import (
    ETHERTYPE_ARP,
    ETHERTYPE_IPV4,
    ETHERTYPE_IPV6,
    FLAG_FRAGMENT,
    FLAG_IP_OPTIONS,
    FLAG_L2,
    FLAG_L3,
    FLAG_L4,
    FLAG_MALFORMED,
    FLAG_SNAPPED,
    FLAG_TRUNCATED,
    FLAG_UNSUPPORTED_LINK,
    IPV4_MAPPED_LO,
    PROTO_ICMP,
    PROTO_ICMPV6,
    PROTO_TCP,
    PROTO_UDP,
    PacketBatch,
)

VLAN_TYPES = (0x8100, 0x88A8)
IPV6_EXT_PLAIN = (0, 43, 60)  # hop-by-hop, routing, destination options: (len + 1) * 8 bytes
IPV6_EXT_FRAGMENT = 44
IPV6_EXT_AH = 51  # (len + 2) * 4 bytes
MAX_IPV6_EXT = 8  # extension headers followed at most; a longer chain is left undecoded
RAW_TYPES = (lt.LINKTYPE_RAW, lt.LINKTYPE_IPV4, lt.LINKTYPE_IPV6, *lt.RAW_ALIASES)
BSD_AF_INET6 = (24, 28, 30)  # AF_INET6 differs between BSDs


def decode(frames: FrameBatch) -> PacketBatch:
    """Decode every frame of ``frames``; frames it cannot read still get a row.

    >>> from netids.detect.frames import FrameBatch
    >>> eth = bytes(6) + bytes.fromhex("020000000001") + b"\\x08\\x00"
    >>> ip = bytes.fromhex("4500002800010000400600000a0000010a000002")
    >>> tcp = bytes.fromhex("3039005000000000000000005002200000000000")
    >>> p = decode(FrameBatch.from_frames([eth + ip + tcp], [0.0]))
    >>> int(p.proto[0]), int(p.sport[0]), int(p.dport[0]), int(p.tcp_flags[0]), int(p.ttl[0])
    (6, 12345, 80, 2, 64)
    """
    return _Decoder(frames).run()


class _Decoder:
    """State of one batch's decoding: positions per frame advance layer by layer."""

    def __init__(self, frames: FrameBatch) -> None:
        self.f = frames
        self.n = n = len(frames)
        buf = frames.buf
        if len(buf) < 8:  # room for the widest word read below
            buf = np.concatenate([buf, np.zeros(8, dtype=np.uint8)])
        self.buf = buf
        # big-endian words starting at every byte: overlapping views of the buffer, no copy, so
        # reading a field is one gather (not a gather of its bytes, then a reshape)
        self.words = {size: np.ndarray((len(buf) - size + 1,), f">u{size}", buf, 0, (1,))
                      for size in (2, 4, 8)}
        self.start = frames.start.astype(np.int64)
        self.end = self.start + frames.caplen
        self.status = np.zeros(n, dtype=np.uint16)
        self.status[frames.caplen < frames.wirelen] |= FLAG_SNAPPED

    # -- reading --------------------------------------------------------------------------
    def have(
        self, pos: np.ndarray, size: int | np.ndarray, limit: np.ndarray | None = None
    ) -> np.ndarray:
        """Whether ``size`` bytes at ``pos`` lie inside the frame (and before ``limit``)."""
        end = self.end if limit is None else np.minimum(self.end, limit)
        return (pos >= self.start) & (pos + size <= end)

    def u8(self, pos: np.ndarray) -> np.ndarray:
        return np.take(self.buf, pos, mode="clip").astype(np.int64)

    def word(self, pos: np.ndarray, size: int) -> np.ndarray:
        """Big-endian ``size``-byte words at ``pos`` (clipped to the buffer; mask with
        :meth:`have`)."""
        words = self.words[size]
        return words[np.clip(pos, 0, len(words) - 1)]

    def u16(self, pos: np.ndarray) -> np.ndarray:
        return self.word(pos, 2).astype(np.int64)

    def u32(self, pos: np.ndarray) -> np.ndarray:
        return self.word(pos, 4).astype(np.int64)

    def u48(self, pos: np.ndarray) -> np.ndarray:
        """Six bytes at ``pos`` (a MAC address); callers read them where eight fit in the frame."""
        return self.word(pos, 8).astype(np.uint64) >> np.uint64(16)

    # -- layers ---------------------------------------------------------------------------
    def run(self) -> PacketBatch:
        n = self.n
        self.out = {
            "ethertype": np.full(n, -1, np.int32), "vlan": np.full(n, -1, np.int32),
            "src_mac": np.zeros(n, np.uint64), "dst_mac": np.zeros(n, np.uint64),
            "ip_version": np.full(n, -1, np.int8), "proto": np.full(n, -1, np.int16),
            "ttl": np.full(n, -1, np.int16), "src_hi": np.zeros(n, np.uint64),
            "src_lo": np.zeros(n, np.uint64), "dst_hi": np.zeros(n, np.uint64),
            "dst_lo": np.zeros(n, np.uint64), "frag": np.full(n, -1, np.int32),
            "sport": np.full(n, -1, np.int32), "dport": np.full(n, -1, np.int32),
            "tcp_flags": np.full(n, -1, np.int16), "window": np.full(n, -1, np.int32),
            "udp_len": np.full(n, -1, np.int32), "icmp_type": np.full(n, -1, np.int16),
            "icmp_code": np.full(n, -1, np.int16), "arp_op": np.full(n, -1, np.int16),
            "arp_sha": np.zeros(n, np.uint64), "payload": np.full(n, -1, np.int32),
            "ip_len": np.full(n, -1, np.int32), "seq": np.full(n, -1, np.int64),
            "payload_at": np.full(n, -1, np.int32),
        }
        if n:
            l3, etype = self.link()
            self.arp(l3, etype == ETHERTYPE_ARP)
            l4, proto, l4_end, wire_end = self.ipv4(l3, etype == ETHERTYPE_IPV4)
            l4b, protob, l4_endb, wire_endb = self.ipv6(l3, etype == ETHERTYPE_IPV6)
            v6 = etype == ETHERTYPE_IPV6
            l4, proto = np.where(v6, l4b, l4), np.where(v6, protob, proto)
            l4_end, wire_end = np.where(v6, l4_endb, l4_end), np.where(v6, wire_endb, wire_end)
            self.transport(l4, proto, l4_end, wire_end)
        return PacketBatch(
            ts=self.f.ts.astype(np.float64, copy=False),
            length=self.f.wirelen.astype(np.int32, copy=False),
            status=self.status,
            **self.out,
        )

    def link(self) -> tuple[np.ndarray, np.ndarray]:
        """Offset of the network header and the ethertype of every frame (-1: none)."""
        s, linktype, out = self.start, self.f.linktype, self.out
        l3 = s.copy()
        etype = np.full(self.n, -1, np.int64)

        eth = (linktype == lt.LINKTYPE_ETHERNET) & self.have(s, 14)
        out["dst_mac"] = np.where(eth, self.u48(s), 0).astype(np.uint64)
        out["src_mac"] = np.where(eth, self.u48(s + 6), 0).astype(np.uint64)
        etype = np.where(eth, self.u16(s + 12), etype)
        l3 = np.where(eth, s + 14, l3)
        for depth in range(2):
            tag = eth & np.isin(etype, VLAN_TYPES)
            ok = tag & self.have(l3, 4)
            self.status[tag & ~ok] |= FLAG_TRUNCATED
            if depth == 0:
                out["vlan"] = np.where(ok, self.u16(l3) & 0x0FFF, -1).astype(np.int32)
            etype = np.where(ok, self.u16(l3 + 2), np.where(tag, -1, etype))
            l3 = np.where(ok, l3 + 4, l3)
        # 802.3 frames carry a length, not a type, below 0x600 (LLC follows)
        etype = np.where(eth & (etype >= 0) & (etype < 0x600), -1, etype)

        sll = (linktype == lt.LINKTYPE_LINUX_SLL) & self.have(s, 16)
        etype = np.where(sll, self.u16(s + 14), etype)
        l3 = np.where(sll, s + 16, l3)
        sll_mac = sll & (self.u16(s + 2) == 1) & (self.u16(s + 4) == 6)
        out["src_mac"] = np.where(sll_mac, self.u48(s + 6), out["src_mac"]).astype(np.uint64)

        sll2 = (linktype == lt.LINKTYPE_LINUX_SLL2) & self.have(s, 20)
        etype = np.where(sll2, self.u16(s), etype)
        l3 = np.where(sll2, s + 20, l3)
        sll2_mac = sll2 & (self.u16(s + 8) == 1) & (self.u8(s + 11) == 6)
        out["src_mac"] = np.where(sll2_mac, self.u48(s + 12), out["src_mac"]).astype(np.uint64)

        null = np.isin(linktype, (lt.LINKTYPE_NULL, lt.LINKTYPE_LOOP)) & self.have(s, 4)
        family = self.word(s, 4)  # big-endian for LINKTYPE_LOOP, host order (read: little)
        fam = np.where(linktype == lt.LINKTYPE_LOOP, family, family.byteswap()).astype(np.int64)
        etype = np.where(null & (fam == 2), ETHERTYPE_IPV4, etype)
        etype = np.where(null & np.isin(fam, BSD_AF_INET6), ETHERTYPE_IPV6, etype)
        l3 = np.where(null, s + 4, l3)

        raw = np.isin(linktype, RAW_TYPES) & self.have(s, 1)
        version = self.u8(s) >> 4
        etype = np.where(raw & (version == 4), ETHERTYPE_IPV4, etype)
        etype = np.where(raw & (version == 6), ETHERTYPE_IPV6, etype)

        known = np.isin(
            linktype,
            (lt.LINKTYPE_ETHERNET, lt.LINKTYPE_LINUX_SLL, lt.LINKTYPE_LINUX_SLL2,
             lt.LINKTYPE_NULL, lt.LINKTYPE_LOOP, *RAW_TYPES),
        )
        self.status[~known] |= FLAG_UNSUPPORTED_LINK
        understood = eth | sll | sll2 | null | raw
        self.status[known & ~understood] |= FLAG_TRUNCATED
        self.status[understood] |= FLAG_L2
        out["ethertype"] = etype.astype(np.int32)
        return l3, etype

    def arp(self, l3: np.ndarray, is_arp: np.ndarray) -> None:
        out = self.out
        head = is_arp & self.have(l3, 8)
        self.status[is_arp & ~head] |= FLAG_TRUNCATED
        out["arp_op"] = np.where(head, self.u16(l3 + 6), out["arp_op"]).astype(np.int16)
        ipv4_eth = head & (self.u8(l3 + 4) == 6) & (self.u8(l3 + 5) == 4)
        full = ipv4_eth & self.have(l3, 28)
        self.status[ipv4_eth & ~full] |= FLAG_TRUNCATED
        self.status[head] |= FLAG_L3
        out["arp_sha"] = np.where(full, self.u48(l3 + 8), 0).astype(np.uint64)
        mapped = np.uint64(IPV4_MAPPED_LO)
        spa, tpa = self.u32(l3 + 14).astype(np.uint64), self.u32(l3 + 24).astype(np.uint64)
        out["src_lo"] = np.where(full, spa | mapped, out["src_lo"]).astype(np.uint64)
        out["dst_lo"] = np.where(full, tpa | mapped, out["dst_lo"]).astype(np.uint64)

    def ipv4(self, l3: np.ndarray, is_ip: np.ndarray) -> tuple[np.ndarray, ...]:
        """Returns transport offset, protocol (-1: no transport to read), end of the transport
        data in the frame, and its end on the wire."""
        out = self.out
        head = is_ip & self.have(l3, 20)
        self.status[is_ip & ~head] |= FLAG_TRUNCATED
        b0 = self.u8(l3)
        ihl = (b0 & 0x0F) * 4
        good = head & (b0 >> 4 == 4) & (ihl >= 20)
        self.status[head & ~good] |= FLAG_MALFORMED
        self.status[good & (ihl > 20)] |= FLAG_IP_OPTIONS
        self.status[good] |= FLAG_L3
        total = self.u16(l3 + 2)
        frag = self.u16(l3 + 6) & 0x1FFF
        proto = self.u8(l3 + 9)
        out["ip_version"] = np.where(good, 4, out["ip_version"]).astype(np.int8)
        out["ttl"] = np.where(good, self.u8(l3 + 8), out["ttl"]).astype(np.int16)
        out["proto"] = np.where(good, proto, out["proto"]).astype(np.int16)
        out["frag"] = np.where(good, frag, out["frag"]).astype(np.int32)
        mapped = np.uint64(IPV4_MAPPED_LO)
        out["src_lo"] = np.where(good, self.u32(l3 + 12).astype(np.uint64) | mapped, out["src_lo"])
        out["dst_lo"] = np.where(good, self.u32(l3 + 16).astype(np.uint64) | mapped, out["dst_lo"])
        self.status[good & (frag > 0)] |= FLAG_FRAGMENT
        # scapy trusts the length field unless it is shorter than the header (TSO writes 0)
        stated = total >= ihl
        l4_end = np.where(stated, np.minimum(l3 + total, self.end), self.end)
        wire_end = np.where(stated, l3 + total, self.start + self.f.wirelen)
        l4 = l3 + ihl
        has_l4 = good & (frag == 0)
        payload = np.where(good, np.maximum(wire_end - l4, 0), out["payload"])
        out["payload"] = payload.astype(np.int32)
        out["ip_len"] = np.where(good, wire_end - l3, out["ip_len"]).astype(np.int32)
        return l4, np.where(has_l4, proto, -1), l4_end, wire_end

    def ipv6(self, l3: np.ndarray, is_ip: np.ndarray) -> tuple[np.ndarray, ...]:
        out = self.out
        head = is_ip & self.have(l3, 40)
        self.status[is_ip & ~head] |= FLAG_TRUNCATED
        good = head & (self.u8(l3) >> 4 == 6)
        self.status[head & ~good] |= FLAG_MALFORMED
        self.status[good] |= FLAG_L3
        plen = self.u16(l3 + 4)
        for i, name in enumerate(("src_hi", "src_lo", "dst_hi", "dst_lo")):
            half = self.word(l3 + 8 + 8 * i, 8).astype(np.uint64)
            out[name] = np.where(good, half, out[name]).astype(np.uint64)
        out["ip_version"] = np.where(good, 6, out["ip_version"]).astype(np.int8)
        out["ttl"] = np.where(good, self.u8(l3 + 7), out["ttl"]).astype(np.int16)
        data_end = l3 + 40 + plen
        l4_end = np.minimum(data_end, self.end)

        nh = np.where(good, self.u8(l3 + 6), -1)
        l4 = l3 + 40
        frag = np.where(good, 0, -1)
        live = good.copy()  # still following the header chain
        for _ in range(MAX_IPV6_EXT):
            plain, fragment, ah = (live & np.isin(nh, IPV6_EXT_PLAIN),
                                   live & (nh == IPV6_EXT_FRAGMENT), live & (nh == IPV6_EXT_AH))
            ext = plain | fragment | ah
            if not ext.any():
                break
            self.status[ext] |= FLAG_IP_OPTIONS
            size = np.where(plain, (self.u8(l4 + 1) + 1) * 8,
                            np.where(fragment, 8, (self.u8(l4 + 1) + 2) * 4))
            ok = ext & self.have(l4, np.maximum(size, 2), data_end)
            self.status[ext & ~ok] |= FLAG_TRUNCATED
            offset = self.u16(l4 + 2) >> 3
            frag = np.where(ok & fragment, offset, frag)
            nh = np.where(ok, self.u8(l4), np.where(ext, -1, nh))
            l4 = np.where(ok, l4 + size, l4)
            live = ok & ~(fragment & (offset > 0))
        self.status[good & (frag > 0)] |= FLAG_FRAGMENT
        out["proto"] = np.where(good, nh, out["proto"]).astype(np.int16)
        out["frag"] = np.where(good & (frag >= 0), frag, out["frag"]).astype(np.int32)
        payload = np.where(good, np.maximum(data_end - l4, 0), out["payload"])
        out["payload"] = payload.astype(np.int32)
        out["ip_len"] = np.where(good, data_end - l3, out["ip_len"]).astype(np.int32)
        proto = np.where(good & (frag <= 0) & ~np.isin(nh, (*IPV6_EXT_PLAIN, 44, 51)), nh, -1)
        return l4, proto, l4_end, data_end

    def transport(self, l4: np.ndarray, proto: np.ndarray, l4_end: np.ndarray,
                  wire_end: np.ndarray) -> None:
        out = self.out
        tcp = proto == PROTO_TCP
        tcp_ok = tcp & self.have(l4, 20, l4_end)
        offset = (self.u8(l4 + 12) >> 4) * 4
        out["sport"] = np.where(tcp_ok, self.u16(l4), out["sport"]).astype(np.int32)
        out["dport"] = np.where(tcp_ok, self.u16(l4 + 2), out["dport"]).astype(np.int32)
        flags = ((self.u8(l4 + 12) & 1) << 8) | self.u8(l4 + 13)
        out["tcp_flags"] = np.where(tcp_ok, flags, -1).astype(np.int16)
        out["window"] = np.where(tcp_ok, self.u16(l4 + 14), -1).astype(np.int32)
        out["seq"] = np.where(tcp_ok, self.u32(l4 + 4), -1)
        tcp_payload = np.maximum(wire_end - l4 - np.maximum(offset, 20), 0)

        udp = proto == PROTO_UDP
        udp_ok = udp & self.have(l4, 8, l4_end)
        out["sport"] = np.where(udp_ok, self.u16(l4), out["sport"]).astype(np.int32)
        out["dport"] = np.where(udp_ok, self.u16(l4 + 2), out["dport"]).astype(np.int32)
        out["udp_len"] = np.where(udp_ok, self.u16(l4 + 4), -1).astype(np.int32)
        udp_payload = np.maximum(wire_end - l4 - 8, 0)

        icmp = (proto == PROTO_ICMP) | (proto == PROTO_ICMPV6)
        icmp_ok = icmp & self.have(l4, 4, l4_end)
        out["icmp_type"] = np.where(icmp_ok, self.u8(l4), -1).astype(np.int16)
        out["icmp_code"] = np.where(icmp_ok, self.u8(l4 + 1), -1).astype(np.int16)

        decoded = tcp_ok | udp_ok | icmp_ok
        self.status[decoded] |= FLAG_L4
        self.status[(tcp | udp | icmp) & ~decoded] |= FLAG_TRUNCATED
        payload = np.where(tcp_ok, tcp_payload, np.where(udp_ok, udp_payload, out["payload"]))
        out["payload"] = payload.astype(np.int32)
        # where the payload starts, for the payload checks; a TCP data offset under 20 is
        # impossible, so that segment's payload is not located
        at = np.where(tcp_ok & (offset >= 20), l4 + offset, np.where(udp_ok, l4 + 8, -1))
        out["payload_at"] = np.where(at >= 0, at - self.start, -1).astype(np.int32)
