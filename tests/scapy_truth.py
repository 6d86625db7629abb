"""Reference values for decoder fields, taken from scapy's full dissection of a frame."""

from __future__ import annotations

from typing import Any

from scapy.all import (  # noqa: F401  (loads every layer binding scapy has)
    ARP,
    ICMP,
    IP,
    TCP,
    UDP,
    CookedLinux,
    CookedLinuxV2,
    Dot1AD,
    Dot1Q,
    Dot3,
    Ether,
    IPv6,
    IPv6ExtHdrFragment,
    Loopback,
    conf,
)
from scapy.layers.inet6 import _IPv6ExtHdr
from scapy.layers.ipsec import AH

from netids.detect.frames import LINKTYPE_LINUX_SLL, LINKTYPE_LINUX_SLL2
from netids.detect.packets import parse_ip

IPV6_EXT = (_IPv6ExtHdr, AH)


def dissect(frame: bytes, linktype: int) -> Any:
    cls = conf.l2types.get(linktype)
    return None if cls is None else cls(frame)


def truth(pkt: Any, linktype: int) -> dict[str, int]:
    """Fields the decoder must reproduce, named as PacketBatch columns; absent fields are
    left out (the decoder must report them missing)."""
    out: dict[str, int] = {}
    layer = pkt
    if type(pkt) is Dot3:
        out["dst_mac"] = int(pkt.dst.replace(":", ""), 16)
        out["src_mac"] = int(pkt.src.replace(":", ""), 16)
        return out
    if type(pkt) is Ether:
        out["dst_mac"] = int(pkt.dst.replace(":", ""), 16)
        out["src_mac"] = int(pkt.src.replace(":", ""), 16)
        out["ethertype"] = pkt.type
        layer = pkt.payload
        first = True
        while type(layer) in (Dot1Q, Dot1AD):
            if first:
                out["vlan"] = layer.vlan
                first = False
            out["ethertype"] = layer.type
            layer = layer.payload
        if out["ethertype"] < 0x600:
            del out["ethertype"]
    elif linktype in (LINKTYPE_LINUX_SLL, LINKTYPE_LINUX_SLL2):
        out["ethertype"] = pkt.proto
        layer = pkt.payload
    else:
        layer = pkt.payload if type(pkt) is Loopback else pkt
    t = type(layer)
    if t is ARP:
        out["arp_op"] = layer.op
        if layer.hwlen == 6 and layer.plen == 4:
            out["arp_sha"] = int(layer.hwsrc.replace(":", ""), 16)
            out["src_lo"] = parse_ip(layer.psrc)[1]
            out["dst_lo"] = parse_ip(layer.pdst)[1]
        return out
    if t is IP:
        out.update(ip_version=4, ttl=layer.ttl, proto=layer.proto, frag=layer.frag,
                   src_lo=parse_ip(layer.src)[1], dst_lo=parse_ip(layer.dst)[1])
        layer = layer.payload
    elif t is IPv6:
        src, dst = parse_ip(layer.src), parse_ip(layer.dst)
        out.update(ip_version=6, ttl=layer.hlim, src_hi=src[0], src_lo=src[1],
                   dst_hi=dst[0], dst_lo=dst[1])
        nh, frag = layer.nh, 0
        layer = layer.payload
        while isinstance(layer, IPV6_EXT):
            if type(layer) is IPv6ExtHdrFragment:
                frag = layer.offset
            nh = layer.nh
            layer = layer.payload
        out.update(proto=nh, frag=frag)
    else:
        return out
    t = type(layer)
    if t is TCP:
        out.update(sport=layer.sport, dport=layer.dport, tcp_flags=int(layer.flags),
                   window=layer.window)
    elif t is UDP:
        out.update(sport=layer.sport, dport=layer.dport, udp_len=layer.len)
    elif t is ICMP or (out.get("proto") == 58 and "type" in layer.fields):
        # some ICMPv6 classes (MLDv2 reports) name the second byte "res", not "code"
        code = layer.code if "code" in layer.fields else bytes(layer)[1]
        out.update(icmp_type=layer.type, icmp_code=code)
    return out
