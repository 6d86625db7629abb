"""Context features: what a single header cannot show, such as a scan, a flood or a spoofed ARP.

Per source host, destination host, host pair and socket, the engine keeps exponentially
decayed statistics over several time windows, like Kitsune's AfterImage: a packet seen
``dt`` seconds ago weighs ``2 ** (-lambda * dt)``. For a window ``lambda`` the decayed count
``w`` turns into a rate (``w * lambda * ln 2`` packets/s for steady traffic), and decayed sums
of a value and its square into its mean and spread. Every feature is the state *after* the
packet it belongs to, so a flood's packets carry the flood's rate.

The update runs a whole batch at once: packets are grouped by key, and each group's decayed
sums are a cumulative sum of ``x * 2 ** (lambda * (t - T0))`` scaled back by
``2 ** (-lambda * (t - T0))`` plus the group's carried-in state. Batches are cut into chunks
short enough (``lambda * span <= MAX_EXPONENT``) for that to stay exact in float64. State is
bounded: each key table holds ``capacity`` keys and recycles the idlest ones.

All features are listed, with their meaning, in :data:`FEATURE_DOCS` (the feature table of
docs/detector.md is made from it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from netids.detect.arpwatch import ArpWatch
from netids.detect.asked import AskedFor
from netids.detect.bindings import MacBindings
from netids.detect.decay import MAX_EXPONENT, DecayedSums, mean_std, time_chunks
from netids.detect.hashing import mix, socket_key
from netids.detect.keytable import KeyTable, TableStats, table_stats
from netids.detect.packets import PacketBatch

LN2 = math.log(2.0)
SYN, ACK = 0x02, 0x10
# Gaps between a source's packets are averaged as log10 of seconds: a host that pauses for
# 13 s between packets 10 ms apart adds 3 decades to its log gaps, where its squared gaps
# would grow by 169 s2 against 0.0001 s2 a packet and keep the spread far above normal for
# minutes at the 100 s window (issue #15). A gap under a microsecond is capture timestamp
# noise. A gap longer than the longest window's half-life is not counted at all: the source
# was idle longer than any window remembers, and its timing starts afresh. Counted, it gave
# every wake-up of a device that speaks every few minutes (a Wi-Fi access point's group
# rekeys, two EAPOL frames milliseconds apart) a gap spread of several decades: half of the
# held-out IoT network's false flags (docs/drift.md).
MIN_GAP = 1e-6
FORGOTTEN = 2.0**-20  # decayed weight under which a window remembers no gap


@dataclass(frozen=True, slots=True)
class ContextConfig:
    """Windows and limits of the context engine."""

    lambdas: tuple[float, ...] = (1.0, 0.1, 0.01)  # decay rates: half-lives of 1 s, 10 s, 100 s
    capacity: int = 1 << 16  # keys tracked per table (hosts, pairs, sockets, services)
    arp_hold: float = 300.0  # seconds an IP-to-MAC binding is remembered for conflict checks
    arp_capacity: int = 4096  # IP-to-MAC bindings remembered at most
    mac_moved_half_life: float = 30.0  # seconds for ip_mac_moved to halve after a MAC change

    def __post_init__(self) -> None:
        assert self.lambdas and all(lam > 0 for lam in self.lambdas)


def _window_names(lambdas: tuple[float, ...]) -> list[str]:
    return [f"{1 / lam:g}s" for lam in lambdas]


# (name template, meaning); {w} is a window's half-life
PER_WINDOW = (
    ("src_rate_{w}", "packets/s sent by the source host"),
    ("src_size_mean_{w}", "mean packet length sent by the source host (bytes)"),
    ("src_size_std_{w}", "spread of packet lengths sent by the source host (bytes)"),
    ("src_iat_mean_{w}", "typical gap between the source host's packets (s): the geometric "
                         "mean, so one long pause moves it by its log, not its length; gaps "
                         "over the longest half-life are idleness and not counted"),
    ("src_iat_std_{w}", "spread of the gaps between the source host's packets, in decades "
                        "(standard deviation of log10 of the gaps counted)"),
    ("src_syn_rate_{w}", "TCP SYNs without ACK per second from the source host"),
    ("src_new_port_rate_{w}", "new (destination, port, protocol) services contacted per second "
                              "by the source host: distinct destination ports (replies, such as "
                              "resets and SYN-ACKs, contact nothing and do not count)"),
    ("src_new_dst_rate_{w}", "new destination hosts contacted per second by the source host "
                             "(replies do not count)"),
    ("dst_rate_{w}", "packets/s received by the destination host"),
    ("dst_new_src_rate_{w}", "new source hosts per second reaching the destination host "
                             "(replies do not count)"),
    ("dst_unsolicited_rate_{w}", "replies per second reaching the destination host on "
                                 "connections it never opened: SYN-ACKs, and UDP from a lower to "
                                 "a higher port, unless it asked everyone (broadcast, multicast) "
                                 "on that port; DHCP answers never count (reflection, "
                                 "amplification, backscatter)"),
    ("pair_rate_{w}", "packets/s from the source to the destination host"),
    ("pair_size_mean_{w}", "mean packet length from the source to the destination (bytes)"),
    ("pair_size_std_{w}", "spread of packet lengths from the source to the destination"),
    ("sock_rate_{w}", "packets/s on this socket (addresses, ports, protocol)"),
    ("sock_size_mean_{w}", "mean packet length on this socket (bytes)"),
    ("sock_size_std_{w}", "spread of packet lengths on this socket (bytes)"),
    ("mac_new_ip_rate_{w}", "new source IP addresses per second behind the source MAC address "
                            "(spoofed sources, DHCP floods)"),
    ("link_new_mac_rate_{w}", "new source MAC addresses per second on the whole link (MAC "
                              "flooding, floods from random MACs)"),
)
GLOBAL = (
    ("arp_conflict", "1 when this ARP packet binds its sender IP to a MAC other than the one "
                     "that IP had in the last arp_hold seconds (ARP spoofing), else 0"),
    ("arp_mac_ips", "distinct IPs the ARP sender's MAC has claimed in the last arp_hold seconds"),
    ("ip_mac_moved", "how recently the MAC address carrying this packet's source or destination "
                     "IP changed: 1 on the change, halving every mac_moved_half_life seconds, 0 "
                     "while bindings hold and on packets with the MAC the IP had before "
                     "(ARP-spoofing man in the middle)"),
)


def feature_docs(config: ContextConfig = ContextConfig()) -> dict[str, str]:
    """Name and meaning of every feature, in column order."""
    docs: dict[str, str] = {}
    for window in _window_names(config.lambdas):
        for template, meaning in PER_WINDOW:
            docs[template.format(w=window)] = f"{meaning}, half-life {window}"
    docs.update(GLOBAL)
    return docs


FEATURE_DOCS = feature_docs()
FEATURE_NAMES: tuple[str, ...] = tuple(FEATURE_DOCS)


class ContextFeatures:
    """Stateful feature engine: feed batches in time order, get one feature row per packet.

    >>> from scapy.all import Ether, IP, TCP
    >>> from netids.detect.decode import decode
    >>> from netids.detect.frames import FrameBatch
    >>> frames = [bytes(Ether() / IP(src="10.0.0.9", dst="10.0.0.1") / TCP(dport=p, flags="S"))
    ...           for p in range(1, 201)]
    >>> packets = decode(FrameBatch.from_frames(frames, np.linspace(0, 1, 200)))
    >>> f = ContextFeatures().update(packets)
    >>> col = FEATURE_NAMES.index("src_new_port_rate_1s")
    >>> bool(f[-1, col] > 100)  # 200 ports in one second: a scan
    True
    """

    def __init__(self, config: ContextConfig = ContextConfig()) -> None:
        self.config = config
        cap, lam = config.capacity, np.asarray(config.lambdas)
        self.lambdas = lam
        self.tables = {name: KeyTable(cap)
                       for name in ("src", "dst", "pair", "sock", "service", "mac")}
        # src channels: 1, size, size^2, syn, new service, new dst, gap count, log gap, its square
        self.src = DecayedSums(cap, lam, 9)
        self.src_prev = np.full(cap, np.nan)  # time of the source's previous packet
        # destination (1, new source, unsolicited reply), pair and socket (1, size, size^2)
        # share one bank of 3 x capacity slots: one grouped pass costs half of three
        self.trio = DecayedSums(3 * cap, lam, 3)
        self.trio_base = {"dst": 0, "pair": cap, "sock": 2 * cap}
        self.mac = DecayedSums(cap, lam, 1)  # new source IP behind the source MAC
        self.link = DecayedSums(1, lam, 1)  # new source MAC, one slot for the whole link
        self.arp = ArpWatch(config.arp_hold, config.arp_capacity)
        self.asked = AskedFor(cap)  # who asked everyone (broadcast, multicast) for an answer
        self.src_mac = MacBindings(cap, config.mac_moved_half_life)  # source IP -> source MAC
        self.dst_mac = MacBindings(cap, config.mac_moved_half_life)  # dest IP -> dest MAC
        self.max_span = MAX_EXPONENT / float(lam.max())
        self.idle_gap = 1.0 / float(lam.min())  # longer gaps are idleness, not timing
        self.started: float | None = None  # the stream's first packet time (its warm-up)

    @property
    def evicted(self) -> int:
        """Keys recycled so far because a table was full (state is bounded, not lossless)."""
        return sum(t.evicted for t in self.tables.values())

    def table_stats(self) -> list[TableStats]:
        """Size and evictions of every bounded table, for the summary and the dashboard."""
        return table_stats(self.tables) + [self.asked.table.stats("asked everyone"),
                                           self.arp.stats()]

    def update(self, packets: PacketBatch) -> np.ndarray:
        """Feature rows (float32 [n, len(FEATURE_NAMES)]) for a batch, advancing the state."""
        step = self.config.capacity // 4  # a key table takes at most capacity / 2 new keys
        if len(packets) > step:
            return np.concatenate([self._update(packets.take(slice(lo, lo + step)))
                                   for lo in range(0, len(packets), step)])
        return self._update(packets)

    def _update(self, packets: PacketBatch) -> np.ndarray:
        n = len(packets)
        out = np.zeros((n, len(FEATURE_NAMES)), dtype=np.float32)
        if n == 0:
            return out
        if self.started is None:
            self.started = float(packets.ts.min())
        ts = packets.ts
        keys = _keys(packets)
        unsolicited = self._unsolicited(packets, keys)
        slots, new = {}, {}
        for name, table in self.tables.items():
            slots[name], new[name] = table.lookup(keys[name], ts)
        fresh = {name: slots[name][new[name]] for name in slots}  # slots new keys now hold
        self.src.reset(fresh["src"], ts[new["src"]])
        self.src_prev[fresh["src"]] = np.nan
        self.src_mac.reset(fresh["src"])
        self.dst_mac.reset(fresh["dst"])
        for name, base in self.trio_base.items():
            self.trio.reset(fresh[name] + base, ts[new[name]])
        self.mac.reset(fresh["mac"], ts[new["mac"]])

        size = packets.length.astype(np.float64)
        syn = ((packets.tcp_flags >= 0) & (packets.tcp_flags & (SYN | ACK) == SYN)).astype(float)
        opens = _initiates(packets)  # a host answering a scan contacts none of its ports
        new_service = (new["service"] & opens).astype(float)
        new_pair = (new["pair"] & opens).astype(float)
        iat, has_prev = self._gaps(slots["src"], ts)
        has_prev *= iat <= self.idle_gap
        log_gap = has_prev * np.log10(np.clip(iat, MIN_GAP, self.idle_gap))

        chunk, chunk_t0 = time_chunks(ts, self.max_span)
        ones = np.ones(n)
        src = self.src.update(slots["src"], ts, np.stack(
            [ones, size, size**2, syn, new_service, new_pair, has_prev, log_gap, log_gap**2],
            axis=1), chunk, chunk_t0)
        sizes = _size_channels(size)
        dst, pair, sock = np.split(self.trio.update(
            np.concatenate([slots[name] + base for name, base in self.trio_base.items()]),
            np.tile(ts, 3), np.concatenate([np.stack([ones, new_pair, unsolicited], axis=1),
                                            sizes, sizes]),
            np.tile(chunk, 3), chunk_t0), 3)
        new_ip = (new["src"] & keys["src_has_ip"] & (packets.src_mac != 0)).astype(float)
        mac = self.mac.update(slots["mac"], ts, new_ip[:, None], chunk, chunk_t0)
        new_mac = (new["mac"] & (packets.src_mac != 0)).astype(float)
        link = self.link.update(np.zeros(n, dtype=np.int64), ts, new_mac[:, None], chunk,
                                chunk_t0)
        self._per_window(out, src, dst, pair, sock, mac, link)
        out[:, -3:-1] = self.arp.update(packets)
        src_mac = _binding_mac(packets.src_mac, packets.src_lo, keys["src_has_ip"])
        dst_mac = _binding_mac(packets.dst_mac, packets.dst_lo, keys["dst_has_ip"])
        out[:, -1] = np.maximum(self.src_mac.update(slots["src"], src_mac, ts),
                                self.dst_mac.update(slots["dst"], dst_mac, ts))
        return out

    def _per_window(self, out: np.ndarray, src: np.ndarray, dst: np.ndarray, pair: np.ndarray,
                    sock: np.ndarray, mac: np.ndarray, link: np.ndarray) -> None:
        """Write the PER_WINDOW columns of every window from the decayed sums [n, L, C]."""
        per_window = len(PER_WINDOW)
        for li, lam in enumerate(self.lambdas):
            rate = lam * LN2
            out[:, li * per_window:(li + 1) * per_window] = np.stack([
                src[:, li, 0] * rate, *mean_std(src[:, li, 0], src[:, li, 1], src[:, li, 2]),
                *_gap_stats(src[:, li, 6], src[:, li, 7], src[:, li, 8]),
                src[:, li, 3] * rate, src[:, li, 4] * rate, src[:, li, 5] * rate,
                dst[:, li, 0] * rate, dst[:, li, 1] * rate, dst[:, li, 2] * rate,
                pair[:, li, 0] * rate, *mean_std(*pair[:, li].T),
                sock[:, li, 0] * rate, *mean_std(*sock[:, li].T),
                mac[:, li, 0] * rate, link[:, li, 0] * rate,
            ], axis=1)

    def _unsolicited(self, p: PacketBatch, keys: dict[str, np.ndarray]) -> np.ndarray:
        """1.0 for a reply nobody asked for (:class:`~netids.detect.asked.AskedFor`): reflected
        and amplified floods are all such replies; so is backscatter."""
        def reverse(rows: np.ndarray) -> np.ndarray:
            with np.errstate(over="ignore"):
                pair = mix(keys["dst"][rows], keys["src"][rows])
            return socket_key(pair, p.proto[rows], p.dport[rows], p.sport[rows])

        return self.asked.unsolicited(p, reverse, keys["sock"], self.tables["sock"])

    def _gaps(self, slots: np.ndarray, ts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Gap to the same source's previous packet (0 and flag 0 when there is none)."""
        order = np.argsort(slots, kind="stable")
        s, t = slots[order], ts[order]
        prev = np.empty(len(s))
        prev[0] = np.nan
        prev[1:] = t[:-1]
        starts = np.ones(len(s), dtype=bool)
        starts[1:] = s[1:] != s[:-1]
        prev[starts] = self.src_prev[s[starts]]
        last = np.append(np.flatnonzero(starts)[1:] - 1, len(s) - 1)
        self.src_prev[s[last]] = t[last]
        gap = np.empty(len(s))
        gap[order] = np.maximum(t - prev, 0.0)
        has = ~np.isnan(gap)
        return np.where(has, gap, 0.0), has.astype(float)


# ICMP / ICMPv6 types that answer or report on another packet: echo and timestamp replies,
# unreachable, redirect, time exceeded, parameter problem (RFC 792, 4443)
_ICMP_ANSWERS = np.zeros((2, 256), dtype=bool)  # [ICMPv6?, type]
_ICMP_ANSWERS[0, [0, 3, 4, 5, 11, 12, 14, 16, 18]] = True
_ICMP_ANSWERS[1, [1, 2, 3, 4, 129]] = True


def _initiates(p: PacketBatch) -> np.ndarray:
    """True for packets that may open a conversation, False for replies: TCP resets and
    SYN-ACKs, UDP from a lower to a higher port (a service answering its client), ICMP replies
    and errors. A web server answering a SYN flood, or a host resetting a port scan, replies to
    thousands of new ports and hosts without contacting any of them.

    >>> from types import SimpleNamespace as P
    >>> _initiates(P(tcp_flags=np.array([0x02, 0x12, 0x14, 0x10, -1, -1, -1, -1]),
    ...              proto=np.array([6, 6, 6, 6, 17, 17, 1, 1]),
    ...              sport=np.array([40000, 80, 80, 40000, 40000, 53, -1, -1]),
    ...              dport=np.array([80, 40000, 40000, 80, 53, 40000, -1, -1]),
    ...              icmp_type=np.array([-1, -1, -1, -1, -1, -1, 8, 3]))).tolist()
    [True, False, False, True, True, False, True, False]
    """
    flags = p.tcp_flags.astype(np.int64)
    tcp_reply = (flags >= 0) & (((flags & 0x04) != 0) | ((flags & (SYN | ACK)) == SYN | ACK))
    udp_reply = (p.proto == 17) & (p.sport >= 0) & (p.sport < p.dport)
    icmp = (p.icmp_type >= 0) & ((p.proto == 1) | (p.proto == 58))
    icmp_reply = icmp & _ICMP_ANSWERS[(p.proto == 58).astype(np.int64),
                                      np.clip(p.icmp_type, 0, 255)]
    return ~(tcp_reply | udp_reply | icmp_reply)


def _gap_stats(w: np.ndarray, s: np.ndarray, ss: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(typical gap in seconds, spread in decades) from decayed sums of log10 gaps: 0 for a
    source with no gap yet, or none the window still remembers (its gaps' weight decayed
    under ``FORGOTTEN``, twenty half-lives: the sums are then rounding noise).

    >>> typical, spread = _gap_stats(np.array([2.0, 0.0, 1e-9]), np.array([-4.0, 0.0, -3e-9]),
    ...                              np.array([10.0, 0.0, 1e-8]))
    >>> typical.tolist(), spread.tolist()
    ([0.01, 0.0, 0.0], [1.0, 0.0, 0.0])
    """
    mean, std = mean_std(w, s, ss)
    remembered = w > FORGOTTEN
    return np.where(remembered, 10.0 ** mean, 0.0), np.where(remembered, std, 0.0)


def _size_channels(size: np.ndarray) -> np.ndarray:
    return np.stack([np.ones(len(size)), size, size**2], axis=1)


def _keys(p: PacketBatch) -> dict[str, np.ndarray]:
    """Hash keys of each packet's source, destination, pair, socket and service.

    Hosts are IP addresses (ARP sender/target IPs for ARP); frames without one are keyed by
    their MAC addresses, so non-IP talkers still get statistics.
    """
    with np.errstate(over="ignore"):
        no_ip_src = (p.src_hi == 0) & (p.src_lo == 0)
        no_ip_dst = (p.dst_hi == 0) & (p.dst_lo == 0)
        src = np.where(no_ip_src, mix(p.src_mac, np.uint64(1)), mix(p.src_hi, p.src_lo))
        dst = np.where(no_ip_dst, mix(p.dst_mac, np.uint64(1)), mix(p.dst_hi, p.dst_lo))
        pair = mix(src, dst)
        sock = socket_key(pair, p.proto, p.sport, p.dport)
        proto = p.proto.astype(np.int64).astype(np.uint64)
        dport = (p.dport.astype(np.int64) & 0xFFFF).astype(np.uint64)
        service = mix(mix(pair, np.uint64(2)), (proto << np.uint64(32)) | dport)
    return {"src": src, "dst": dst, "pair": pair, "sock": sock, "service": service,
            "mac": p.src_mac, "src_has_ip": ~no_ip_src, "dst_has_ip": ~no_ip_dst}


def _binding_mac(mac: np.ndarray, ip_lo: np.ndarray, has_ip: np.ndarray) -> np.ndarray:
    """The MAC that binds a packet's IP address, 0 where there is no binding to learn: no IP,
    an unspecified address (0.0.0.0, ::), or a broadcast/multicast MAC (group bit set).

    >>> _binding_mac(np.array([0x02_0000_000001, 0xFFFF_FFFF_FFFF], dtype=np.uint64),
    ...              np.array([0xFFFF_0A00_0001, 0xFFFF_0A00_0001], dtype=np.uint64),
    ...              np.array([True, True])).tolist()
    [2199023255553, 0]
    """
    unicast = (mac >> np.uint64(40)) & np.uint64(1) == 0
    specified = ip_lo & np.uint64(0xFFFF_FFFF) != 0
    return np.where(has_ip & unicast & specified, mac, np.uint64(0))
