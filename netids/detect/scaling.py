"""Turn decoded packets and their context features into model inputs.

Two kinds of input per packet:

- **numeric**: a few per-packet sizes (length, TTL, TCP window, UDP length, payload) plus every
  context feature column, made comparable by :class:`RobustScaler` (median / IQR fitted on
  training traffic, ``log1p`` first for heavy-tailed columns, clipped);
- **categorical**: protocol, TCP flags, source and destination port class, ICMP type, ARP
  opcode and decoder status, as small integer codes the model embeds. They are never fed as raw
  numbers: port 443 is not "443 times more" than port 1.

>>> import numpy as np
>>> port_class(np.array([-1, 80, 1000, 8081, 60000]))
array([ 0, 10, 42, 43, 44])
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from netids.detect.counted import set_uncounted
from netids.detect.packets import ETHERTYPE_ARP, FLAG_FRAGMENT, IPV4_MAPPED_LO, PacketBatch

# per-packet numeric fields (before the context feature columns): PacketBatch columns, and
# "ttl_hops" (:func:`ttl_hops`). Checkpoints list theirs; those made before ttl_hops read "ttl".
PACKET_NUMERIC = ("length", "ttl_hops", "window", "udp_len", "payload")
# The TTLs operating systems and devices start from; a TTL counts down one per router
INITIAL_TTLS = (32, 64, 128, 255)

# Ports with a class of their own; any other port falls into one of three range classes.
KNOWN_PORTS = (20, 21, 22, 23, 25, 53, 67, 68, 69, 80, 88, 110, 111, 123, 135, 137, 138, 139,
               143, 161, 162, 389, 443, 445, 500, 502, 514, 520, 546, 547, 587, 853, 993, 995,
               1900, 3306, 3389, 5353, 5355, 8080, 8443)
_PORT_LOOKUP = np.zeros(65536, dtype=np.int64)
_PORT_LOOKUP[:1024] = len(KNOWN_PORTS) + 1  # other system port
_PORT_LOOKUP[1024:49152] = len(KNOWN_PORTS) + 2  # registered
_PORT_LOOKUP[49152:] = len(KNOWN_PORTS) + 3  # ephemeral
for _i, _p in enumerate(KNOWN_PORTS):
    _PORT_LOOKUP[_p] = _i + 1
PORT_CLASSES = len(KNOWN_PORTS) + 4  # 0 = no port

# TCP flag combinations with a class of their own (0 = not TCP, 1 = any other combination):
# the everyday ones, the empty, FIN and Xmas probes of scans, and ECN variants OSes send
TCP_FLAG_COMBOS = (0x000, 0x001, 0x002, 0x004, 0x008, 0x010, 0x011, 0x012, 0x014, 0x018,
                   0x019, 0x029, 0x03F, 0x0C2, 0x052, 0x050, 0x090, 0x0D2, 0x110, 0x112)
_FLAG_LOOKUP = np.ones(512, dtype=np.int64)
for _i, _f in enumerate(TCP_FLAG_COMBOS):
    _FLAG_LOOKUP[_f] = _i + 2
# ICMP / ICMPv6 types with a class of their own (0 = not ICMP, 1 = any other type)
ICMP_TYPES = (0, 3, 4, 5, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 1, 2, 128, 129, 130, 131,
              133, 134, 135, 136, 137, 143)
_ICMP_LOOKUP = np.ones(256, dtype=np.int64)
for _i, _t in enumerate(ICMP_TYPES):
    _ICMP_LOOKUP[_t] = _i + 2
# The codes each ICMP (RFC 792, 950, 1256) and ICMPv6 (RFC 4443, 4861, 3810, 8883) type defines:
# a code its type does not define, or any code of an unknown type, is how crafted and fuzzed
# ICMP shows (whatever the type, which the icmp_type field reads on its own)
ICMP_CODES = {
    1: {0: 1, 3: 16, 4: 1, 5: 4, 8: 1, 9: 1, 10: 1, 11: 2, 12: 3, 13: 1, 14: 1, 15: 1, 16: 1,
        17: 1, 18: 1},
    58: {1: 8, 2: 1, 3: 2, 4: 11, 128: 1, 129: 1, 130: 1, 131: 1, 132: 1, 133: 1, 134: 1,
         135: 1, 136: 1, 137: 1, 143: 1},
}
_ICMP_CODE_OK = np.zeros((2, 256, 256), dtype=bool)  # [ICMPv6?, type, code]
for _proto, _codes in ICMP_CODES.items():
    for _t, _count in _codes.items():
        _ICMP_CODE_OK[int(_proto == 58), _t, :_count] = True
_ICMP_CODE_OK[0, 9, 16] = True  # router advertisement: "does not route common traffic"

# What kind of address a packet's source or destination IP is (ARP: sender / target IP).
# Spoofed floods draw random addresses: TCP from a multicast or class E source, to 0.0.0.0/8
# or 240/4, never seen on a working network (IANA special-purpose registries, RFC 6890)
ADDRESS_CLASSES = ("no IP address", "unspecified", "loopback", "private", "link-local",
                   "public", "multicast", "broadcast", "reserved")
# IPv4 classes by first octet, then the prefixes finer than an octet (prefix, length, class)
_IPV4_BY_OCTET = np.full(256, 5, dtype=np.int64)  # public
_IPV4_BY_OCTET[[0, 10, 127]] = (8, 3, 2)  # this network (reserved), private, loopback
_IPV4_BY_OCTET[224:240] = 6  # multicast
_IPV4_BY_OCTET[240:] = 8  # class E, reserved
_IPV4_PREFIXES = ((0xAC100000, 12, 3), (0xC0A80000, 16, 3), (0x64400000, 10, 3),
                  (0xA9FE0000, 16, 4), (0x00000000, 32, 1), (0xFFFFFFFF, 32, 7))
# (prefix of the high 64 bits, prefix length, class) for IPv6; :: and ::1 are told apart by
# the low half
_IPV6_PREFIXES = (
    (0x2000 << 48, 3, 5), (0xFC00 << 48, 7, 3), (0xFE80 << 48, 10, 4), (0xFF00 << 48, 8, 6),
)
# The link layer's addresses against the IP destination: a source MAC with the group bit set
# is never valid (IEEE 802), and a multicast MAC carries only a multicast IP (RFC 1112, 2464)
MAC_CLASSES = ("no MAC address", "unicast", "broadcast", "multicast", "group source MAC",
               "MAC does not match the IP destination")

# categorical field name -> vocabulary size (the model's embedding tables and output heads)
CATEGORICAL = {
    "protocol": 8,  # see protocol_class
    "tcp_flags": len(TCP_FLAG_COMBOS) + 2,  # see TCP_FLAG_COMBOS
    "sport_class": PORT_CLASSES,
    "dport_class": PORT_CLASSES,
    "icmp_type": len(ICMP_TYPES) + 2,  # see ICMP_TYPES
    "icmp_code": 3,  # 0 not ICMP, 1 a code the type defines, 2 any other (see ICMP_CODES)
    "arp_op": 4,  # 0 none, 1 request, 2 reply, 3 other
    "status": 32,  # decoder status bits 3..7: truncated, malformed, unsupported link,
    # fragment, IP options. Not bit 8 (snapped): how much of a packet the capture kept is a
    # capture setting, not traffic behaviour, and must not make a snaplen look like an attack
    "src_addr": len(ADDRESS_CLASSES),  # see address_class
    "dst_addr": len(ADDRESS_CLASSES),
    "mac": len(MAC_CLASSES),  # see mac_class
}
# Fields whose values depend on what a network runs (its services, protocols, ICMP use): no
# value of them counts as rarer than NETWORK_SHARE_FLOOR of training traffic (see
# model.PacketAutoencoder.errors), so one unseen port is as weak as a rare one, not certain
NETWORK_FIELDS = ("protocol", "sport_class", "dport_class", "icmp_type")
NETWORK_SHARE_FLOOR = 1e-4
PROTOCOL_NAMES = ("other link layer", "ARP", "TCP", "UDP", "ICMP", "ICMPv6", "other IP protocol",
                  "IP fragment")


def share_floors() -> tuple[float, ...]:
    """The share floor of each field of :data:`CATEGORICAL`, in order (0: none)."""
    return tuple(NETWORK_SHARE_FLOOR if name in NETWORK_FIELDS else 0.0 for name in CATEGORICAL)


def port_class(port: np.ndarray) -> np.ndarray:
    """Class code of each port: 0 none, 1.. a known service, then system/registered/ephemeral."""
    out = _PORT_LOOKUP[np.clip(port, 0, 65535)]
    return np.where(port < 0, 0, out)


def icmp_code_class(packets: PacketBatch) -> np.ndarray:
    """0 not ICMP, 1 an ICMP code its type defines, 2 a code it does not (see ICMP_CODES).

    >>> from types import SimpleNamespace as P
    >>> icmp_code_class(P(proto=np.array([1, 1, 58, 6]), icmp_type=np.array([3, 8, 143, -1]),
    ...                   icmp_code=np.array([13, 7, 0, -1]))).tolist()
    [1, 2, 1, 0]
    """
    icmp = (packets.icmp_type >= 0) & (packets.icmp_code >= 0)
    ok = _ICMP_CODE_OK[(packets.proto == 58).astype(np.int64),
                       np.clip(packets.icmp_type, 0, 255), np.clip(packets.icmp_code, 0, 255)]
    return np.where(icmp, np.where(ok, 1, 2), 0).astype(np.int64)


def address_class(hi: np.ndarray, lo: np.ndarray, version: np.ndarray,
                  arp: np.ndarray) -> np.ndarray:
    """Code of each address, indexing :data:`ADDRESS_CLASSES`; ``version`` is the packet's IP
    version (4, 6, -1) and ``arp`` marks ARP packets, whose addresses are IPv4.

    >>> import ipaddress
    >>> ips = ["10.1.2.3", "8.8.8.8", "224.0.0.251", "240.1.2.3", "0.0.0.0", "255.255.255.255",
    ...        "2001:db8::1", "fe80::1", "ff02::fb", "::1", "fd00::5"]
    >>> ints = [int(ipaddress.ip_address(a).ipv4_mapped or ipaddress.ip_address(a))
    ...         if ":" in a else 0xFFFF_0000_0000 | int(ipaddress.ip_address(a)) for a in ips]
    >>> hi = np.array([i >> 64 for i in ints], dtype=np.uint64)
    >>> lo = np.array([i & (2**64 - 1) for i in ints], dtype=np.uint64)
    >>> version = np.array([6 if ":" in a else 4 for a in ips])
    >>> names = [ADDRESS_CLASSES[c] for c in address_class(hi, lo, version, version < 0)]
    >>> names[:6]
    ['private', 'public', 'multicast', 'reserved', 'unspecified', 'broadcast']
    >>> names[6:]
    ['public', 'link-local', 'multicast', 'loopback', 'private']
    """
    v4 = (version == 4) | arp
    ip4 = (lo & np.uint64(0xFFFF_FFFF)).astype(np.int64)
    out = _IPV4_BY_OCTET[ip4 >> 24]
    for prefix, bits, code in _IPV4_PREFIXES:
        out[(ip4 >> (32 - bits)) == (prefix >> (32 - bits))] = code
    v6 = (version == 6) & ~arp
    mapped = v6 & (hi == 0) & ((lo >> np.uint64(32)) == np.uint64(IPV4_MAPPED_LO >> 32))
    v6 &= ~mapped
    out[v6] = 8  # reserved unless a prefix says otherwise
    for prefix, bits, code in _IPV6_PREFIXES:
        shift = np.uint64(64 - bits)
        out[v6 & ((hi >> shift) == np.uint64(prefix >> (64 - bits)))] = code
    zero_hi = v6 & (hi == 0)
    out[zero_hi & (lo == 0)] = 1
    out[zero_hi & (lo == 1)] = 2
    out[~v4 & ~v6 & ~mapped] = 0
    return out


def mac_class(packets: PacketBatch, dst_addr: np.ndarray) -> np.ndarray:
    """Code of each frame's MAC addresses, indexing :data:`MAC_CLASSES`; ``dst_addr`` is the
    :func:`address_class` of its IP destination.

    A frame without MAC addresses (raw IP or a tunnel's capture, Linux loopback) is classed by
    its IP destination, as its link layer would have carried it: whether a capture keeps the
    link layer is a capture setting, not traffic behaviour, and a model trained on Ethernet
    must not find every packet of a tunnel new. Only a frame without an IP address either is
    "no MAC address".

    >>> from types import SimpleNamespace as P
    >>> u, b, m = 0x02_0000_000001, 0xFFFF_FFFF_FFFF, 0x01_005E_0000FB
    >>> p = P(src_mac=np.array([u, u, u, u, m, u, 0], dtype=np.uint64),
    ...       dst_mac=np.array([u, b, m, m, u, u, 0], dtype=np.uint64))
    >>> dst = np.array([5, 3, 6, 5, 5, 6, 5])  # public, private, multicast, ...
    >>> [MAC_CLASSES[c] for c in mac_class(p, dst)][:4]
    ['unicast', 'broadcast', 'multicast', 'MAC does not match the IP destination']
    >>> [MAC_CLASSES[c] for c in mac_class(p, dst)][4:]
    ['group source MAC', 'MAC does not match the IP destination', 'unicast']
    >>> p = P(src_mac=np.zeros(4, dtype=np.uint64), dst_mac=np.zeros(4, dtype=np.uint64))
    >>> [MAC_CLASSES[c] for c in mac_class(p, np.array([6, 7, 3, 0]))]  # no link layer
    ['multicast', 'broadcast', 'unicast', 'no MAC address']
    """
    group = np.uint64(1 << 40)
    dst_group = (packets.dst_mac & group) != 0
    broadcast = packets.dst_mac == np.uint64(0xFFFF_FFFF_FFFF)
    out = np.where(broadcast, 2, np.where(dst_group, 3, 1))
    ip_group = (dst_addr == 6) | (dst_addr == 7)
    unicast_ip = (dst_addr >= 1) & ~ip_group
    # a broadcast MAC may carry a unicast IP (subnet-directed broadcast, ARP requests)
    out[(dst_group & ~broadcast & unicast_ip) | (~dst_group & ip_group)] = 5
    out[(packets.src_mac & group) != 0] = 4
    none = (packets.src_mac == 0) & (packets.dst_mac == 0)
    out[none] = np.select([dst_addr[none] == 0, dst_addr[none] == 7, dst_addr[none] == 6],
                          [0, 2, 3], 1)
    return out.astype(np.int64)


def protocol_class(packets: PacketBatch) -> np.ndarray:
    """Code of each packet's protocol, indexing :data:`PROTOCOL_NAMES`."""
    proto = packets.proto.astype(np.int64)
    out = np.full(len(packets), 6, dtype=np.int64)
    out[proto == 6] = 2
    out[proto == 17] = 3
    out[proto == 1] = 4
    out[proto == 58] = 5
    out[(packets.status & FLAG_FRAGMENT) != 0] = 7
    out[proto < 0] = 0
    out[packets.ethertype == ETHERTYPE_ARP] = 1
    return out


def categorical_codes(packets: PacketBatch) -> np.ndarray:
    """int64 [n, len(CATEGORICAL)], one code per categorical field, in CATEGORICAL order."""
    arp = packets.arp_op.astype(np.int64)
    is_arp = packets.ethertype == ETHERTYPE_ARP
    version = packets.ip_version.astype(np.int64)
    dst_addr = address_class(packets.dst_hi, packets.dst_lo, version, is_arp)
    cols = [
        protocol_class(packets),
        _code(packets.tcp_flags, _FLAG_LOOKUP),
        port_class(packets.sport),
        port_class(packets.dport),
        _code(packets.icmp_type, _ICMP_LOOKUP),
        icmp_code_class(packets),
        np.where(arp < 0, 0, np.where((arp == 1) | (arp == 2), arp, 3)),
        (packets.status.astype(np.int64) >> 3) & 31,
        address_class(packets.src_hi, packets.src_lo, version, is_arp),
        dst_addr,
        mac_class(packets, dst_addr),
    ]
    out = np.stack(cols, axis=1)
    assert out.shape == (len(packets), len(CATEGORICAL))
    return out


def past_range(scaled: np.ndarray, clamped: np.ndarray, roles: np.ndarray | None = None,
               uncounted: dict[int, np.ndarray] | None = None) -> np.ndarray:
    """float32 [n]: how far each row lies past the range seen in training, in scaled units
    summed over the columns; ``clamped`` is :meth:`RobustScaler.clamp` of ``scaled``. Training
    calibrates with it and the detector scores with it: one definition for both. On the rows
    of each role (``roles``) its ``uncounted`` columns do not count (see
    :func:`~netids.detect.counted.uncounted_inputs`).

    >>> past_range(np.array([[0.5, 3.0], [-2.0, 0.0]]), np.array([[0.5, 1.0], [-1.0, 0.0]]))
    array([2., 1.], dtype=float32)
    >>> past_range(np.array([[0.5, 3.0], [-2.0, 0.0]]), np.array([[0.5, 1.0], [-1.0, 0.0]]),
    ...            np.array([1, 1]), {1: np.array([1])})
    array([0., 1.], dtype=float32)
    """
    far = np.abs(scaled - clamped)
    if roles is not None and uncounted:
        set_uncounted(far, roles, uncounted, np.zeros(far.shape[1]))
    return far.sum(axis=1, dtype=np.float32)


def ttl_hops(ttl: np.ndarray) -> np.ndarray:
    """Routers between a packet's sender and the sensor: how far its TTL lies below the
    nearest of :data:`INITIAL_TTLS` at or above it (-1: no TTL).

    The TTL itself tells which systems a network runs and how far away they are: a Modbus
    network's controllers start at 32 and arrive with 30, which a model trained on 64s and
    128s found new on every packet (docs/drift.md). The hop count is what it knows of
    distance without the OS: 0 on the local link whatever the system, a few hops to a
    router's other side, 10 to 20 across the internet.

    >>> ttl_hops(np.array([64, 63, 30, 128, 116, 255, 1, 0, -1])).tolist()
    [0, 1, 2, 0, 12, 0, 31, 32, -1]
    """
    ttl = np.asarray(ttl, dtype=np.int64)
    initial = np.asarray(INITIAL_TTLS)[np.searchsorted(INITIAL_TTLS, np.clip(ttl, 0, 255))]
    return np.where(ttl >= 0, initial - ttl, -1)


def raw_numeric(packets: PacketBatch, features: np.ndarray,
                fields: Sequence[str] = PACKET_NUMERIC) -> np.ndarray:
    """float32 [n, len(fields) + F]: the per-packet numeric ``fields`` (exact: all below 2**24),
    then the context features (float32 already)."""
    assert features.ndim == 2 and len(features) == len(packets), (features.shape, len(packets))
    out = np.empty((len(packets), len(fields) + features.shape[1]), np.float32)
    for j, name in enumerate(fields):
        out[:, j] = ttl_hops(packets.ttl) if name == "ttl_hops" else getattr(packets, name)
    out[:, len(fields):] = features
    return out


@dataclass
class RobustScaler:
    """Per column: optional signed ``log1p``, then ``(x - median) / scale``, clipped.

    A column gets the log when it is heavy-tailed in training data: non-negative (``-1``,
    meaning "absent", allowed) with a 99th percentile above 10. ``scale`` is IQR/1.349 (the
    standard deviation for Gaussian data), falling back to the standard deviation, then 1, for
    columns that are nearly constant in training.

    >>> s = RobustScaler.fit(np.array([[1.0, 0.0], [2.0, 1000.0], [3.0, 10.0], [4.0, 50.0]]))
    >>> s.log.tolist()
    [False, True]
    >>> [round(float(v), 1) for v in s.transform(np.array([[2.5, 30.0]]))[0]]
    [0.0, 0.1]
    """

    median: np.ndarray  # float64 [F], after the log
    scale: np.ndarray  # float64 [F], > 0
    log: np.ndarray  # bool [F], signed log1p applied first
    clip: float = 12.0  # scaled values are clipped to +-clip
    lo: np.ndarray | None = None  # float32 [F], smallest scaled value seen in training
    hi: np.ndarray | None = None  # float32 [F], largest scaled value seen in training

    @classmethod
    def fit(cls, x: np.ndarray, clip: float = 12.0,
            rates: np.ndarray | None = None) -> RobustScaler:
        """``rates`` marks the per-second rate columns: always logged, one scaled unit at least
        a factor of e. A rate that is nearly always 0 in training has a tiny spread, and
        scaled by it the busiest normal second already reaches the clip: a 500-ports/s scan
        would then look no different from it."""
        x = np.nan_to_num(np.asarray(x, dtype=np.float64))
        rates = np.zeros(x.shape[1], bool) if rates is None else np.asarray(rates, bool)
        log = rates | ((x.min(axis=0) >= -1) & (np.percentile(x, 99, axis=0) > 10))
        y = np.where(log, _slog(x), x)
        q25, median, q75 = np.percentile(y, [25, 50, 75], axis=0)
        scale = (q75 - q25) / 1.349
        std = y.std(axis=0)
        scale = np.where(scale > 1e-6, scale, np.where(std > 1e-6, std, 1.0))
        scale = np.where(rates, np.maximum(scale, 1.0), scale)
        scaler = cls(median=median, scale=scale, log=log, clip=clip)
        seen = scaler.transform(x)
        scaler.lo, scaler.hi = seen.min(axis=0), seen.max(axis=0)
        return scaler

    def transform(self, x: np.ndarray) -> np.ndarray:
        """float32 [n, F] scaled values, computed in float32 (the features are float32)."""
        y = np.array(x, dtype=np.float32)  # a copy, scaled in place
        assert y.shape[1] == len(self.median), (y.shape, len(self.median))
        if not np.isfinite(y).all():
            np.nan_to_num(y, copy=False)
        logged = np.flatnonzero(self.log)  # the log only where it applies: it is the costly part
        y[:, logged] = _slog(y[:, logged])
        y -= self.median.astype(np.float32)
        y *= (1.0 / self.scale).astype(np.float32)
        return np.clip(y, -self.clip, self.clip, out=y)

    def clamp(self, scaled: np.ndarray) -> np.ndarray:
        """Scaled values limited to the range seen in training: the model's *input*, so it
        cannot extrapolate to values it never saw, while its target stays unclamped."""
        if self.lo is None or self.hi is None:
            return scaled
        return np.clip(scaled, self.lo, self.hi)

    def typical(self) -> np.ndarray:
        """The median of each column in its original units (undoing the log)."""
        return np.where(self.log, np.sign(self.median) * np.expm1(np.abs(self.median)), self.median)

    def state(self) -> dict:
        return {"median": self.median.tolist(), "scale": self.scale.tolist(),
                "log": self.log.tolist(), "clip": self.clip,
                "lo": None if self.lo is None else self.lo.tolist(),
                "hi": None if self.hi is None else self.hi.tolist()}

    @classmethod
    def from_state(cls, state: dict) -> RobustScaler:
        return cls(median=np.asarray(state["median"], dtype=np.float64),
                   scale=np.asarray(state["scale"], dtype=np.float64),
                   log=np.asarray(state["log"], dtype=bool), clip=float(state["clip"]),
                   lo=None if state.get("lo") is None else np.asarray(state["lo"], np.float32),
                   hi=None if state.get("hi") is None else np.asarray(state["hi"], np.float32))


def _code(values: np.ndarray, lookup: np.ndarray) -> np.ndarray:
    """Class of each value through ``lookup``; 0 where the value is absent (-1)."""
    v = values.astype(np.int64)
    return np.where(v < 0, 0, lookup[np.clip(v, 0, len(lookup) - 1)])


def _slog(x: np.ndarray) -> np.ndarray:
    return np.sign(x) * np.log1p(np.abs(x))
