"""Per-input reconstruction error -> a short kind and an explanation in plain words.

The detector hands over, for one anomalous packet, the model inputs sorted by how far their
error is above normal; this module turns the top few into text a person reads ("480 SYN/s from
this source, normal is 2") and picks a short kind ("port scan", "flood", ...) from which inputs
deviate. Pure functions over names and numbers.

>>> describe("length", 1514.0, 60.0)
'packet length 1514 bytes, normal is 60'
>>> kind_of(["src_distinct_dports", "length"], [30.0, 2.0])
'port scan'
"""

from __future__ import annotations

import re

import numpy as np

from netids.packets import format_tcp_flags
from netids.scaling import KNOWN_PORTS, PROTOCOL_NAMES

# (pattern on the input name, kind) in priority order; the first input matching wins
KIND_RULES = (
    (r"arp.*(mac|change|conflict)|(mac|change).*arp", "ARP spoofing"),
    (r"arp", "ARP anomaly"),
    (r"(distinct|unique|n_)\w*port|port\w*(distinct|unique)", "port scan"),
    (r"(distinct|unique|n_)\w*(host|dst|addr)|(host|dst)\w*(distinct|unique)", "host sweep"),
    (r"syn", "flood"),
    (r"rate|pps|count|bps|bytes_per|per_s", "flood"),
    (r"ttl", "unusual TTL"),
    (r"flag", "unusual flags"),
    (r"status|malformed|truncat|frag", "malformed packet"),
    (r"icmp", "unusual ICMP"),
    (r"port", "unusual port"),
    (r"protocol|proto", "unusual protocol"),
    (r"len|size|payload|bytes", "unusual size"),
    (r"iat|gap|interval|arrival", "unusual timing"),
)

# words for the per-packet inputs; context features fall back to their name
LABELS = {
    "length": ("packet length", "bytes"),
    "ttl": ("TTL", ""),
    "window": ("TCP window", ""),
    "udp_len": ("UDP length", "bytes"),
    "payload": ("payload", "bytes"),
}


def kind_of(names: list[str], errors: list[float]) -> str:
    """Short kind of deviation from the inputs with the largest errors (largest first)."""
    for name, _ in sorted(zip(names, errors, strict=True), key=lambda p: -p[1])[:3]:
        for pattern, kind in KIND_RULES:
            if re.search(pattern, name.lower()):
                return kind
    return "unusual traffic"


def describe(name: str, value: float, typical: float) -> str:
    """One numeric input in words, with its typical value on normal traffic."""
    label, unit = LABELS.get(name, (_words(name), ""))
    if "rate" in name or name.endswith("_per_s"):
        unit = "/s"
    v, t = _num(value), _num(typical)
    if unit == "/s":
        return f"{label} {v}/s, normal is {t}"
    return f"{label} {v}{' ' + unit if unit else ''}, normal is {t}"


def describe_code(name: str, code: int, packet_value: int) -> str:
    """One categorical input in words: the value this packet had, called rare."""
    if name == "protocol":
        return f"protocol {PROTOCOL_NAMES[code]} is rare here"
    if name == "tcp_flags":
        return f"TCP flags [{format_tcp_flags(packet_value) or 'none'}] are rare here"
    if name in ("sport_class", "dport_class"):
        side = "source" if name.startswith("s") else "destination"
        if code == 0:
            return f"no {side} port is rare here"
        known = "" if code > len(KNOWN_PORTS) else " (a known service)"
        return f"{side} port {packet_value}{known} is rare here"
    if name == "icmp_type":
        return f"ICMP type {packet_value} is rare here"
    if name == "arp_op":
        return f"ARP opcode {packet_value} is rare here"
    if name == "status":
        return "decoder flagged the headers (truncated, malformed, fragment or options)"
    return f"{_words(name)} {packet_value} is rare here"


def _words(name: str) -> str:
    return name.replace("_", " ")


def _num(x: float) -> str:
    x = float(x)
    if not np.isfinite(x):
        return "n/a"
    if abs(x) >= 100 or x == round(x):
        return f"{x:.0f}"
    if abs(x) >= 1:
        return f"{x:.1f}"
    return f"{x:.2f}"
