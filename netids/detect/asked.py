"""Which replies were asked for: the evidence behind "replies nobody asked for" (reflection,
amplification, backscatter).

A reply is a SYN-ACK, or UDP from a lower to a higher port (a service answering a client). It
was asked for when its destination was seen sending the other way on the same socket, or when
its destination asked everyone: a request to a broadcast or multicast address on the
reply's port (SSDP's M-SEARCH, LLMNR, WS-Discovery, NetBIOS), answered by one host with a
unicast reply the request's socket cannot match, within ``ASKED_SECONDS`` of the request.
DHCP servers (67 to 68, DHCPv6 547 to 546)
always answer a client that asked everyone, often before it has the address they answer
to; their replies are never counted. Without these, a quiet IoT network's DHCP renewals
read as a reflection flood on the device renewing (docs/drift.md).
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import repeat

import numpy as np

from netids.detect.hashing import mix, socket_key
from netids.detect.keytable import KeyTable
from netids.detect.packets import PacketBatch
from netids.detect.scaling import address_class

SYN, ACK = 0x02, 0x10
# how long a request to everyone stays asked: answers come within seconds (SSDP's MX is at
# most 5 s, LLMNR waits 1 s), and a reflected flood long after one search is not its answer
ASKED_SECONDS = 60.0
_GROUP_CLASSES = (6, 7)  # scaling.ADDRESS_CLASSES: multicast, broadcast
_DHCP_SERVER_TO_CLIENT = ((67, 68), (547, 546))


class AskedFor:
    """Tells each reply of a batch whether its destination asked for it.

    >>> from scapy.all import Ether, IP, UDP
    >>> from netids.detect.decode import decode
    >>> from netids.detect.frames import FrameBatch
    >>> me, tv = "02:00:00:00:00:05", "02:00:00:00:00:07"
    >>> search = Ether(src=me, dst="01:00:5e:7f:ff:fa") / IP(src="10.0.0.5",
    ...     dst="239.255.255.250") / UDP(sport=50000, dport=1900)
    >>> answer = Ether(src=tv, dst=me) / IP(src="10.0.0.7", dst="10.0.0.5") / UDP(
    ...     sport=1900, dport=50000)
    >>> unasked = Ether(src=tv, dst=me) / IP(src="10.0.0.7", dst="10.0.0.5") / UDP(
    ...     sport=161, dport=50001)
    >>> p = decode(FrameBatch.from_frames([bytes(f) for f in (search, answer, unasked)],
    ...                                   np.array([0.0, 0.1, 0.2])))
    >>> AskedFor(64).unsolicited(p, lambda rows: rows.astype(np.uint64), np.arange(
    ...     3, dtype=np.uint64) + 9, KeyTable(64)).tolist()
    [0.0, 0.0, 1.0]
    """

    def __init__(self, capacity: int) -> None:
        # (asker, protocol, its port, the port it asked everyone on), bounded like the
        # context's other tables
        self.table = KeyTable(capacity)

    def unsolicited(self, p: PacketBatch, reverse_socket: Callable[[np.ndarray], np.ndarray],
                    sockets: np.ndarray, known_sockets: KeyTable) -> np.ndarray:
        """1.0 per reply nobody asked for, else 0.0. ``sockets``: every packet's socket key;
        ``reverse_socket(rows)``: those packets' sockets seen from the other end;
        ``known_sockets``: the table of sockets seen before this batch. Remembers this
        batch's requests to everyone for the batches after it."""
        out = np.zeros(len(p))
        synack = (p.tcp_flags >= 0) & (p.tcp_flags & (SYN | ACK) == (SYN | ACK))
        udp_reply = (p.proto == 17) & (p.sport >= 0) & (p.sport < p.dport)
        for server, client in _DHCP_SERVER_TO_CLIENT:
            udp_reply &= ~((p.sport == server) & (p.dport == client))
        rows = np.flatnonzero(synack | udp_reply)
        to_all = _to_everyone(p)
        if len(rows) == 0:
            self._remember(p, to_all)
            return out
        reverse = reverse_socket(rows)
        asked_all = _asking_key(_asker(p.dst_mac, p.dst_hi, p.dst_lo), p.proto, p.dport,
                                p.sport)[rows]
        requests = np.flatnonzero(to_all)
        request_keys = _asking_key(_asker(p.src_mac, p.src_hi, p.src_lo), p.proto, p.sport,
                                   p.dport)[requests]
        out[rows] = ~(known_sockets.contains(reverse) | _earlier(sockets, reverse, rows)
                      | self._asked_lately(asked_all, p.ts[rows])
                      | _earlier_among(request_keys, requests, asked_all, rows))
        self._remember(p, to_all)
        return out

    def _asked_lately(self, keys: np.ndarray, ts: np.ndarray) -> np.ndarray:
        """bool per key: a request to everyone under it was seen within ASKED_SECONDS of
        ``ts`` (in an earlier batch)."""
        slots = np.fromiter(map(self.table.slot_of.get, keys.tolist(), repeat(-1)), np.int64,
                            len(keys))
        return (slots >= 0) & (self.table.last_seen[np.maximum(slots, 0)] >= ts - ASKED_SECONDS)

    def _remember(self, p: PacketBatch, to_all: np.ndarray) -> None:
        rows = np.flatnonzero(to_all)
        if len(rows):
            keys = _asking_key(_asker(p.src_mac, p.src_hi, p.src_lo), p.proto, p.sport,
                               p.dport)[rows]
            self.table.lookup(keys, p.ts[rows])


def _to_everyone(p: PacketBatch) -> np.ndarray:
    """bool per packet: UDP to a broadcast or multicast address (IP, or MAC group bit)."""
    out = np.zeros(len(p), dtype=bool)
    udp = np.flatnonzero((p.proto == 17) & (p.sport >= 0))
    mac = p.dst_mac[udp]
    group_mac = (mac != 0) & ((mac >> np.uint64(40)) & np.uint64(1) == 1)
    group_ip = np.isin(address_class(p.dst_hi[udp], p.dst_lo[udp], p.ip_version[udp],
                                     np.zeros(len(udp), dtype=bool)), _GROUP_CLASSES)
    out[udp] = group_mac | group_ip
    return out


def _asker(mac: np.ndarray, hi: np.ndarray, lo: np.ndarray) -> np.ndarray:
    """Who asks: the MAC address where the frame has one (a DHCP client asks before it has an
    address), else the IP address."""
    return np.where(mac != 0, mac, mix(hi, lo))


def _asking_key(asker: np.ndarray, proto: np.ndarray, own_port: np.ndarray,
                asked_port: np.ndarray) -> np.ndarray:
    """Key of (asker, protocol, its port, the port it asked everyone on)."""
    return socket_key(asker, proto, own_port, asked_port)


def _earlier(keys: np.ndarray, wanted: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """bool per ``wanted`` key: it is among ``keys`` (one per packet) before packet ``rows``."""
    return _earlier_among(keys, np.arange(len(keys)), wanted, rows)


def _earlier_among(keys: np.ndarray, at: np.ndarray, wanted: np.ndarray,
                   rows: np.ndarray) -> np.ndarray:
    """bool per ``wanted`` key: one of ``keys`` (seen at packets ``at``) equals it at a packet
    before its row in ``rows``."""
    if len(keys) == 0:
        return np.zeros(len(wanted), dtype=bool)
    uniq, first = np.unique(keys, return_index=True)
    pos = np.minimum(np.searchsorted(uniq, wanted), len(uniq) - 1)
    return (uniq[pos] == wanted) & (at[first[pos]] < rows)
