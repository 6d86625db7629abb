"""Per-input reconstruction error -> a short kind and an explanation in plain words.

The detector hands over, for one anomalous packet, the model inputs sorted by how far their
error is above normal; this module turns the top few into text a person reads ("480 SYN/s from
this source, normal is 2") and picks a short kind ("port scan", "flood", ...) from which inputs
deviate. Pure functions over names and numbers.

>>> describe("src_syn_rate_1s", 480.0, 2.0)
'480 SYN/s from this source, normal is 2'
>>> kind_of(["src_new_port_rate_1s", "length", "tcp_flags"], [30.0, 2.0, 1.0])
'port scan'
>>> describe_code("status", 24, 0x1C0, 0.0), describe_code("icmp_code", 2, 77, 0.0)
('decoder flagged the headers: fragment, IP options', 'ICMP code 77 is not defined for its type')
>>> describe_code("icmp_type", 15, 13, share=0.00012), describe_code("arp_op", 1, 1, share=0.2)
('ICMP type 13 is rare here (0.012% of normal traffic)', 'ARP opcode 1 was not expected here')
>>> describe_code("tcp_flags", 9, 0x12, 0.004), describe_code("tcp_flags", 10, 0x18, 0.3)
('TCP flags [SA] are rare here (0.4% of normal traffic)', 'TCP flags [PA] were not expected here')
>>> kind_of(["icmp_code", "length"], [20.0, 3.0])
'malformed packet'
>>> describe_code("src_addr", 8, 8, 0.0)
'a reserved source address was never seen in normal traffic'
>>> describe_code("mac", 4, 4, 0.0)
'a frame with a group (multicast) source MAC was never seen in normal traffic'
>>> kind_of(["dst_addr", "src_rate_1s"], [9.0, 4.0])
'bogus address'
>>> kind_of(["dst_rate_1s", "tcp_flags"], [9.0, 4.0])  # only the destination is busy
'target under flood'
>>> kind_of(["dst_rate_1s", "src_syn_rate_1s"], [9.0, 4.0])  # and its sender is the flood
'flood'
"""

from __future__ import annotations

import functools
import math
import re

import numpy as np

from netids.detect.counted import answering
from netids.detect.packets import (
    ETHERTYPE_ARP,
    PROTO_ICMP,
    PROTO_ICMPV6,
    PROTO_TCP,
    PROTO_UDP,
    STATUS_NAMES,
    format_tcp_flags,
)
from netids.detect.scaling import ADDRESS_CLASSES, KNOWN_PORTS, PROTOCOL_NAMES

TARGET_FLOOD = "target under flood"  # an event about its destination, whoever sent it
BUSY = "busy connection"  # a conversation's rate alone, on a TCP packet answering its peer
SCANS = ("port scan", "host sweep")  # events about their source, whatever hosts it probed
# (pattern on an input name, kind), in priority order: the first rule matching any of the
# packet's three most surprising inputs names the kind
KIND_RULES = (
    (r"^arp_conflict$|^ip_mac_moved$", "ARP spoofing"),
    (r"^status$|^icmp_code$", "malformed packet"),
    (r"^src_addr$|^dst_addr$|^mac$", "bogus address"),
    (r"new_port", "port scan"),
    (r"new_dst", "host sweep"),
    (r"^arp_mac_ips$", "ARP spoofing"),
    (r"unsolicited", "reflection flood"),
    (r"mac_new_ip|link_new_mac", "spoofed flood"),
    (r"^src_syn_rate_|^src_rate_", "flood"),
    # one conversation far busier than normal: a flood when one-way, a bulk transfer when the
    # packet acknowledges its peer (see busy_or_flood)
    (r"^pair_rate_|^sock_rate_", BUSY),
    # only what reaches the destination is unusual: the packet is one of many hitting a busy
    # host (a normal client of a flooded server, a spoofed flood), not its sender's doing
    (r"^dst_rate_|^dst_new_src_rate_", TARGET_FLOOD),
    (r"^arp_op$", "ARP anomaly"),
    (r"^tcp_flags$|^window$", "unusual flags"),
    (r"^ttl$|^ttl_hops$", "unusual TTL"),
    (r"^icmp_type$", "unusual ICMP"),
    (r"port_class$", "unusual port"),
    (r"^protocol$", "unusual protocol"),
    (r"size|^length$|^udp_len$|^payload$", "unusual size"),
    (r"iat", "unusual timing"),
)

# words for numeric inputs, by name without its window suffix ("_1s", "_10s", ...):
# (phrase with {v} = this packet's value, unit)
PHRASES = {
    "length": ("packet length {v} bytes", ""),
    "ttl": ("TTL {v}", ""),
    "ttl_hops": ("{v} routers away (its TTL below the initial 32, 64, 128 or 255)", ""),
    "window": ("TCP window {v}", ""),
    "udp_len": ("UDP length {v} bytes", ""),
    "payload": ("payload {v} bytes", ""),
    "src_rate": ("{v} packets/s from this source", ""),
    "src_size_mean": ("mean size {v} bytes of this source's packets", ""),
    "src_size_std": ("size spread {v} bytes of this source's packets", ""),
    "src_iat_mean": ("typical gap {v} s between this source's packets", ""),
    "src_iat_std": ("gap spread {v} decades between this source's packets", ""),
    "src_syn_rate": ("{v} SYN/s from this source", ""),
    "src_new_port_rate": ("{v} new destination ports/s from this source", ""),
    "src_new_dst_rate": ("{v} new hosts/s contacted by this source", ""),
    "dst_rate": ("{v} packets/s to this destination", ""),
    "dst_new_src_rate": ("{v} new sources/s reaching this destination", ""),
    "pair_rate": ("{v} packets/s from this source to this destination", ""),
    "pair_size_mean": ("mean size {v} bytes between these hosts", ""),
    "pair_size_std": ("size spread {v} bytes between these hosts", ""),
    "sock_rate": ("{v} packets/s on this connection", ""),
    "sock_size_mean": ("mean size {v} bytes on this connection", ""),
    "sock_size_std": ("size spread {v} bytes on this connection", ""),
    "arp_mac_ips": ("this MAC claimed {v} IP addresses", ""),
    "dst_unsolicited_rate": ("{v} replies/s to this destination that it never asked for", ""),
    "mac_new_ip_rate": ("{v} new source addresses/s behind this MAC", ""),
    "link_new_mac_rate": ("{v} new MAC addresses/s on the link", ""),
    "ip_mac_moved": ("this IP changed MAC address recently (mark {v}, 1 = just now)", ""),
}


# what a packet of each protocol may be told about: an input is evidence of its own
# protocol's packets only (an ARP packet has no ports, an ICMP echo no SYN), even where the
# statistic is the source's over all its traffic. By input name without its window; inputs
# not listed are about any packet (rates, sizes, addresses, MACs).
TCP, UDP, ICMP, ARP = "TCP", "UDP", "ICMP", "ARP"
OWN_PROTOCOLS = {
    "src_syn_rate": (TCP,), "tcp_flags": (TCP,), "window": (TCP,), "udp_len": (UDP,),
    "src_new_port_rate": (TCP, UDP), "sport_class": (TCP, UDP), "dport_class": (TCP, UDP),
    "sock_rate": (TCP, UDP), "sock_size_mean": (TCP, UDP), "sock_size_std": (TCP, UDP),
    "icmp_type": (ICMP,), "icmp_code": (ICMP,),
    "arp_conflict": (ARP,), "arp_mac_ips": (ARP,), "arp_op": (ARP,),
}
_FAMILIES = (TCP, UDP, ICMP, ARP)


def foreign_inputs(names: list[str], ethertype: np.ndarray, proto: np.ndarray) -> np.ndarray:
    """bool [rows, len(names)]: the inputs that are about another protocol than each packet's
    (see OWN_PROTOCOLS), which neither name its kind nor explain it.

    >>> arp, icmp = foreign_inputs(["src_new_port_rate_1s", "src_new_dst_rate_1s", "arp_op"],
    ...                            np.array([0x0806, 0x0800]), np.array([-1, 1]))
    >>> arp.tolist(), icmp.tolist()
    ([True, False, False], [True, False, True])
    """
    family = np.select([ethertype == ETHERTYPE_ARP, proto == PROTO_TCP, proto == PROTO_UDP,
                        (proto == PROTO_ICMP) | (proto == PROTO_ICMPV6)], [3, 0, 1, 2], -1)
    allowed = np.ones((len(_FAMILIES) + 1, len(names)), bool)  # last row: other protocols
    for j, name in enumerate(names):
        own = OWN_PROTOCOLS.get(base_name(name))
        if own is not None:
            allowed[:, j] = [f in own for f in _FAMILIES] + [False]
    return ~allowed[family]


# each of scaling.MAC_CLASSES in words
MAC_PHRASES = ("no MAC address", "unicast MACs", "a broadcast MAC", "a multicast MAC",
               "a group (multicast) source MAC", "a MAC that does not match its IP destination")


def busy_or_flood(kind: str, tcp_flags: int) -> str:
    """A conversation's rate alone names a flood unless the packet is TCP acknowledging its
    peer without opening or resetting (ACK, no SYN or RST): a download or a copy at LAN speed
    is busy, not a flood, and says nothing about an attack on a network the model never saw.
    A flood of ACKs from one host still raises the source's own rate, which names it a flood.

    >>> busy_or_flood(BUSY, 0x18), busy_or_flood(BUSY, 0x02), busy_or_flood(BUSY, -1)
    ('busy connection', 'flood', 'flood')
    """
    if kind != BUSY:
        return kind
    return BUSY if answering(np.array([tcp_flags]))[0] else "flood"


def kind_of(names: list[str], errors: list[float]) -> str:
    """Short kind of deviation from the inputs with the largest errors."""
    top = [n for n, _ in sorted(zip(names, errors, strict=True), key=lambda p: -p[1])[:3]]
    rule = min((_rule_of(name) for name in top), default=len(KIND_RULES))
    return KIND_RULES[rule][1] if rule < len(KIND_RULES) else "unusual traffic"


@functools.lru_cache(maxsize=4096)
def base_name(name: str) -> str:
    """An input's name without its window suffix: 'src_rate_10s' -> 'src_rate'."""
    return re.sub(r"_\d+(\.\d+)?s$", "", name)


@functools.lru_cache(maxsize=4096)
def _rule_of(name: str) -> int:
    """Position of the first rule of KIND_RULES whose pattern matches ``name`` (past the end:
    none); the kind of a packet is the rule of its top inputs that comes first. Cached: the
    names are the model's few dozen inputs, asked about for every explained packet."""
    return next((i for i, (pattern, _) in enumerate(KIND_RULES) if re.search(pattern, name)),
                len(KIND_RULES))


def describe(name: str, value: float, typical: float) -> str:
    """One numeric input in words, with its typical value on normal traffic."""
    phrase, _ = PHRASES.get(base_name(name), (name.replace("_", " ") + " {v}", ""))
    return f"{phrase.format(v=_num(value))}, normal is {_num(typical)}"


RARE_SHARE = 0.01  # a categorical value in fewer normal packets than this is called rare


def describe_code(name: str, code: int, packet_value: int, share: float) -> str:
    """One categorical input in words: the value this packet had, called rare with its share
    of normal traffic when it is, and otherwise only unexpected (the network, reading the
    packet's company, predicted another value)."""
    subject, plural = _code_subject(name, code, packet_value)
    if plural is None:  # says what is wrong in its own words (a decoder flag, an undefined code)
        return subject
    if share >= RARE_SHARE:
        return f"{subject} {'were' if plural else 'was'} not expected here"
    if share > 0:
        verb = "are" if plural else "is"
        return f"{subject} {verb} rare here ({_percent(share)} of normal traffic)"
    return f"{subject} {'were' if plural else 'was'} never seen in normal traffic"


PORT_RANGES = {1: "0-1023", 2: "1024-49151", 3: "49152-65535"}  # the port classes past the
# known services (see scaling.port_class)


def _code_subject(name: str, code: int, packet_value: int) -> tuple[str, bool | None]:
    """What a categorical value is, in words, and whether that is plural; ``None`` instead:
    a whole sentence that needs no rarity."""
    if name == "protocol":
        return f"protocol {PROTOCOL_NAMES[code]}", False
    if name == "tcp_flags":
        return f"TCP flags [{format_tcp_flags(packet_value) or 'none'}]", True
    if name in ("sport_class", "dport_class"):
        side = "source" if name.startswith("s") else "destination"
        if code == 0:
            return f"no {side} port", False
        if code <= len(KNOWN_PORTS):  # the class is this one port: its number is the class
            return f"{side} port {packet_value} (a known service)", False
        # a range: its share is the range's, and the packets grouped with this one are in the
        # range, not on this port (see Pipeline._explain)
        span = PORT_RANGES[code - len(KNOWN_PORTS)]
        return f"{side} ports {span} outside the known services", True
    if name == "icmp_type":
        return f"ICMP type {packet_value}", False
    if name == "icmp_code":
        if code == 2:
            return f"ICMP code {packet_value} is not defined for its type", None
        return ("a defined ICMP code" if code == 1 else "no ICMP code"), False
    if name == "arp_op":
        return f"ARP opcode {packet_value}", False
    if name == "status":
        flags = [text for bit, text in STATUS_NAMES.items() if packet_value & bit]
        if not flags:
            return "headers the decoder found clean", True
        return f"decoder flagged the headers: {', '.join(flags)}", None
    if name in ("src_addr", "dst_addr"):
        side = "source" if name.startswith("s") else "destination"
        return f"a {ADDRESS_CLASSES[code]} {side} address", False
    if name == "mac":
        return f"a frame with {MAC_PHRASES[code]}", False
    return f"{_words(name)} {packet_value}", False


def _percent(share: float) -> str:
    """A share as a percentage with two significant digits: 0.00012 -> '0.012%'."""
    return f"{float(f'{share * 100:.2g}'):g}%"


def _words(name: str) -> str:
    return name.replace("_", " ")


def _num(x: float) -> str:
    x = float(x)
    if not math.isfinite(x):
        return "n/a"
    if abs(x) >= 100 or x == round(x):
        return f"{x:.0f}"
    if abs(x) >= 1:
        return f"{x:.1f}"
    return f"{x:.2f}"
