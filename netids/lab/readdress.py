"""Give each capture of a mix its own IP addresses.

Captures recorded on different networks reuse addresses: two labs both have a 192.168.1.1,
behind different MACs, and public servers sit behind each network's own router. Laid out on
one timeline, such an address seems to move from MAC to MAC, which on one real link only ARP
spoofing does, and two networks' hosts pool their traffic statistics. So a capture whose
addresses collide with an earlier one's moves as a whole: every unicast address's third
octet (IPv4) or its /64 prefix's last byte (IPv6) gains the same offset, the smallest that
keeps each address in its class (private stays private, public stays public) and clear of
every address taken before. Subnets, and all relations between the capture's own hosts,
stay as recorded. Multicast, broadcast, unspecified and loopback addresses are shared by
every network and never move.

Addresses are rewritten in IPv4 and IPv6 headers and ARP, with the IP, TCP, UDP and ICMPv6
checksums adjusted (RFC 1624), on Ethernet (802.1Q tags too) and raw-IP frames. Addresses
quoted inside ICMP errors and in payloads (DNS answers, DHCP) are left as they were.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from netids.detect.frames import LINKTYPE_ETHERNET, LINKTYPE_IPV4, LINKTYPE_IPV6, LINKTYPE_RAW
from netids.detect.scaling import ADDRESS_CLASSES, address_class

KEPT_CLASSES = frozenset(ADDRESS_CLASSES.index(c) for c in
                         ("unspecified", "loopback", "multicast", "broadcast"))
_RAW = {LINKTYPE_RAW, LINKTYPE_IPV4, LINKTYPE_IPV6, 12, 14}  # 12, 14: BSDs' DLT_RAW
_VLAN = {0x8100, 0x88A8}
_SHIFTS = 256  # offsets tried: the shifted byte's values


def address_fields(frame: bytes, linktype: int) -> list[tuple[int, int]]:
    """(offset, length) of every IP address the frame's headers carry: IPv4 and IPv6 source
    and destination, ARP sender and target. Truncated headers give the fields that are whole.

    >>> from scapy.layers.l2 import Ether, ARP
    >>> address_fields(bytes(Ether() / ARP(psrc="10.0.0.1", pdst="10.0.0.2")), 1)
    [(28, 4), (38, 4)]
    """
    layout = _layout(frame, linktype)
    return [] if layout is None else [f for f in layout[0] if f[0] + f[1] <= len(frame)]


def rewrite(frame: bytes, linktype: int, mapping: dict[bytes, bytes]) -> bytes:
    """The frame with its addresses replaced through ``mapping`` (address bytes -> new
    address bytes of the same length) and its checksums adjusted to match."""
    layout = _layout(frame, linktype)
    if layout is None:
        return frame
    fields, checksums = layout
    out = bytearray(frame)
    for off, size in fields:
        old = frame[off:off + size]
        new = mapping.get(old) if len(old) == size else None
        if new is None or new == old:
            continue
        out[off:off + size] = new
        for at, optional in checksums:  # each covers the addresses (TCP, UDP, ICMPv6: in
            if at + 2 <= len(out):  # their pseudo-header)
                _adjust(out, at, old, new, optional)
    return bytes(out)


class AddressSpace:
    """The addresses the captures of one mix have taken so far."""

    def __init__(self) -> None:
        self.taken: set[bytes] = set()

    def claim(self, addresses: Iterable[bytes]) -> tuple[int, dict[bytes, bytes]]:
        """(offset, mapping) for the next capture's ``addresses`` (4 or 16 bytes each): offset
        0 and no mapping when none collides, else the smallest offset that keeps every
        address in its class and clear of the taken ones (the fewest collisions if none
        is). The capture's addresses, moved, are taken from then on."""
        found = sorted(set(addresses))
        if not found:
            return 0, {}
        classes = _classes(found)
        moves = ~np.isin(classes, list(KEPT_CLASSES))
        movable = [a for a, m in zip(found, moves.tolist(), strict=True) if m]
        if not movable:
            return 0, {}
        classes = classes[moves]
        best, best_bad = 0, None
        for k in range(_SHIFTS):
            moved = [_shifted(a, k) for a in movable]
            bad = sum(m in self.taken for m in moved)
            if k:
                bad += int(np.count_nonzero(_classes(moved) != classes)) * len(movable)
            if best_bad is None or bad < best_bad:
                best, best_bad = k, bad
            if bad == 0:
                break
        mapping = {a: _shifted(a, best) for a in movable}
        self.taken.update(mapping.values())
        return best, ({} if best == 0 else mapping)


def capture_addresses(frames: Sequence[bytes], linktypes: Sequence[int]) -> set[bytes]:
    """Every address the frames' headers carry (see :func:`address_fields`)."""
    found: set[bytes] = set()
    for frame, lt in zip(frames, linktypes, strict=True):
        for off, size in address_fields(frame, int(lt)):
            found.add(frame[off:off + size])
    return found


def _shifted(address: bytes, k: int) -> bytes:
    """IPv4: third octet + k; IPv6: last byte of the /64 prefix + k (both modulo 256)."""
    at = 2 if len(address) == 4 else 7
    b = bytearray(address)
    b[at] = (b[at] + k) % 256
    return bytes(b)


def _classes(addresses: Sequence[bytes]) -> np.ndarray:
    ints = [int.from_bytes(a, "big") | (0xFFFF_0000_0000 if len(a) == 4 else 0)
            for a in addresses]
    hi = np.array([i >> 64 for i in ints], dtype=np.uint64)
    lo = np.array([i & 0xFFFF_FFFF_FFFF_FFFF for i in ints], dtype=np.uint64)
    version = np.array([4 if len(a) == 4 else 6 for a in addresses])
    return address_class(hi, lo, version, np.zeros(len(addresses), dtype=bool))


def _layout(frame: bytes, linktype: int):
    """(address fields, checksum fields) of a frame, or None when it carries no IP or ARP
    header this module reads. A checksum field is (offset, optional): an optional one (UDP
    over IPv4) left at 0 means "no checksum" and stays 0."""
    if linktype == LINKTYPE_ETHERNET:
        off, ethertype = 14, int.from_bytes(frame[12:14], "big") if len(frame) >= 14 else -1
        while ethertype in _VLAN and len(frame) >= off + 4:
            ethertype, off = int.from_bytes(frame[off + 2:off + 4], "big"), off + 4
    elif linktype in _RAW and frame:
        off, ethertype = 0, {4: 0x0800, 6: 0x86DD}.get(frame[0] >> 4, -1)
    else:
        return None
    if ethertype == 0x0806:
        if frame[off:off + 6] != b"\x00\x01\x08\x00\x06\x04":  # Ethernet/IPv4 ARP only
            return None
        return [(off + 14, 4), (off + 24, 4)], []
    if ethertype == 0x0800 and len(frame) >= off + 20:
        ihl = (frame[off] & 0x0F) * 4
        fields = [(off + 12, 4), (off + 16, 4)]
        checksums = [(off + 10, False)]
        first_fragment = int.from_bytes(frame[off + 6:off + 8], "big") & 0x1FFF == 0
        l4 = _l4_checksum(frame[off + 9], off + ihl, optional_udp=True)
        if first_fragment and l4 is not None:
            checksums.append(l4)
        return fields, checksums
    if ethertype == 0x86DD and len(frame) >= off + 40:
        nh, at = _skip_extensions(frame, frame[off + 6], off + 40)
        l4 = _l4_checksum(nh, at, optional_udp=False) if at >= 0 else None
        return [(off + 8, 16), (off + 24, 16)], [l4] if l4 else []
    return None


def _l4_checksum(proto: int, at: int, optional_udp: bool) -> tuple[int, bool] | None:
    """The checksum field of a transport header whose checksum covers the IP addresses."""
    if proto == 6:
        return at + 16, False
    if proto == 17:
        return at + 6, optional_udp
    if proto == 58:
        return at + 2, False
    return None


def _skip_extensions(frame: bytes, nh: int, at: int) -> tuple[int, int]:
    """(next header, offset) past IPv6 extension headers; offset -1 in a non-first
    fragment (no transport header) or a cut extension header."""
    while nh in (0, 43, 60, 44):
        if len(frame) < at + 8:
            return nh, -1
        if nh == 44:
            if int.from_bytes(frame[at + 2:at + 4], "big") & 0xFFF8:
                return nh, -1
            nh, at = frame[at], at + 8
        else:
            nh, at = frame[at], at + (frame[at + 1] + 1) * 8
    return nh, at


def _adjust(buf: bytearray, at: int, old: bytes, new: bytes, optional: bool) -> None:
    """Update the one's-complement checksum at ``at`` for ``old`` becoming ``new`` (RFC 1624
    eqn. 3: HC' = ~(~HC + ~m + m'))."""
    checksum = int.from_bytes(buf[at:at + 2], "big")
    if optional and checksum == 0:
        return
    total = ~checksum & 0xFFFF
    for i in range(0, len(old), 2):
        total += (~int.from_bytes(old[i:i + 2], "big") & 0xFFFF) + int.from_bytes(new[i:i + 2],
                                                                                  "big")
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    result = ~total & 0xFFFF
    if optional and result == 0:
        result = 0xFFFF  # UDP sends a computed 0 as all ones
    buf[at:at + 2] = result.to_bytes(2, "big")
