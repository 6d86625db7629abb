"""Capture files as training and evaluation data: packets and their context features.

The same decode and context features as the live pipeline (:meth:`Pipeline.featurise`), over a
whole file with fresh context state, so a model is trained and judged on exactly what it will
see. :func:`check_training_data` says whether packets are fit to be learnt as normal traffic.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from netids.capture.pcapfile import read_batches
from netids.detect.context import FEATURE_NAMES, ContextFeatures
from netids.detect.decode import decode
from netids.detect.frames import FrameBatch
from netids.detect.packets import ETHERTYPE_ARP, FLAG_UNSUPPORTED_LINK, PROTO_TCP, PacketBatch

MIN_IP_SHARE = 0.1  # below this share of IP packets there is nothing to learn: refuse
THIN_IP_SHARE = 0.5  # below this, warn: the model learns mostly what it cannot read
MIN_HOSTS = 3  # fewer IP addresses: one conversation, not a network
MAX_SHORT_SHARE = 0.25  # IP packets in unanswered or cut-short conversations: scans, floods
MAX_NO_ACK_SHARE = 0.5  # TCP packets without ACK: normal TCP acknowledges nearly everything
TCP_ACK = 0x10


def read_capture(path: str | Path, batch_size: int = 4096,
                 done: Callable[[FrameBatch], None] | None = None,
                 ) -> tuple[PacketBatch, np.ndarray]:
    """Decode a whole capture file and compute its context features (fresh state per file);
    ``done`` hears of each batch once it is featurised (for a progress bar)."""
    ctx = ContextFeatures()
    packets, feats = [], []
    for frames in read_batches(path, batch_size):
        p = decode(frames)
        packets.append(p)
        feats.append(ctx.update(p))
        if done is not None:
            done(frames)
    if not packets:
        return _empty_packets(), np.zeros((0, len(FEATURE_NAMES)), np.float32)
    return PacketBatch.concat(packets), np.concatenate(feats).astype(np.float32)


def cold_starts(packets: PacketBatch, count: int, warmup: float) -> list[tuple[PacketBatch,
                                                                              np.ndarray]]:
    """``count`` stretches of ``warmup`` seconds from inside a capture, each featurised from a
    fresh context, as a sensor started there would see them.

    A sensor that starts (or restarts) meets every host, MAC and connection for the first
    time: new addresses per second jump, connections are joined mid-transfer. A capture read
    from its start shows that once; training on these stretches too teaches the model what a
    start looks like, so the first minute of a sensor is not a wall of alarms (issue #15).
    They start at evenly spaced packets after the first, never at the capture's own start.
    """
    n = len(packets)
    if n == 0 or count <= 0:
        return []
    ts = np.maximum.accumulate(packets.ts)
    out = []
    for i in np.linspace(0, n, count + 2)[1:-1].astype(np.int64).tolist():
        end = int(np.searchsorted(ts, ts[i] + warmup, side="right"))
        part = packets.take(slice(i, end))
        out.append((part, ContextFeatures().update(part)))
    return out


def _empty_packets() -> PacketBatch:
    z = np.zeros(0, np.int64)
    return decode(FrameBatch(np.zeros(0, np.uint8), z, z.astype(np.int32), z.astype(np.int32),
                             z.astype(np.float64), z.astype(np.uint16)))


@dataclass(frozen=True)
class DataCheck:
    """Whether packets can be learnt as normal traffic: ``refusal`` says why not; each
    warning names what is thin or unlike normal traffic, and training goes on."""

    packets: int
    ip_packets: int
    refusal: str | None = None
    warnings: list[str] = field(default_factory=list)


def check_training_data(p: PacketBatch) -> DataCheck:
    """Refuse data with essentially no IP traffic netids decodes (an 802.11 capture, ARP
    only); warn when it is thin (few IP packets or hosts) or looks like an attack rather
    than normal use (mostly one- or two-packet conversations, TCP without ACKs).

    Measured on the shared captures of 100 IP packets or more: the normal ones have at most
    5% of their IP packets unanswered or in TCP connections that never opened, and at least
    82% of their TCP packets with ACK; the scans and floods 27-100%, and 0-50%.
    """
    n = len(p)
    ip = p.ip_version > 0
    n_ip = int(ip.sum())
    if n == 0 or n_ip < MIN_IP_SHARE * n:
        return DataCheck(n, n_ip, refusal=f"only {n_ip:,} of {n:,} packets are IP traffic "
                         f"netids decodes ({_not_ip(p.take(~ip))}): there is no "
                         f"normal traffic to learn; train on captures of an Ethernet, Linux "
                         f"cooked or raw IP interface")
    warnings = []
    if n_ip < THIN_IP_SHARE * n:
        warnings.append(f"only {n_ip / n:.0%} of the packets are IP traffic "
                        f"({_not_ip(p.take(~ip))}): the model learns little of what it will judge")
    q = p.take(ip)
    hosts = len(np.unique(np.concatenate([_key(q.src_hi, q.src_lo), _key(q.dst_hi, q.dst_lo)])))
    if hosts < MIN_HOSTS:
        warnings.append(f"only {hosts} IP address{'es' if hosts != 1 else ''} in the data: "
                        f"the model learns one conversation, not a network")
    short = _short_conversation_share(q)
    if short > MAX_SHORT_SHARE:
        warnings.append(f"{short:.0%} of the IP packets are unanswered or in TCP connections "
                        f"that never opened, as in scans and floods: is this normal traffic?")
    tcp = q.proto == PROTO_TCP
    no_ack = float(((q.tcp_flags[tcp] & TCP_ACK) == 0).mean()) if tcp.sum() >= 100 else 0.0
    if no_ack > MAX_NO_ACK_SHARE:
        warnings.append(f"{no_ack:.0%} of the TCP packets carry no ACK, as in scans and "
                        f"SYN floods: is this normal traffic?")
    return DataCheck(n, n_ip, warnings=warnings)


def _not_ip(p: PacketBatch) -> str:
    """What the packets that are not IP are, largest part first."""
    unsupported = int((p.status & FLAG_UNSUPPORTED_LINK != 0).sum())
    arp = int((p.ethertype == ETHERTYPE_ARP).sum())
    parts = [(unsupported, "of a link type netids does not decode, such as 802.11 radio"),
             (arp, "ARP"), (len(p) - unsupported - arp, "other or undecodable frames")]
    return ", ".join(f"{k:,} {what}" for k, what in sorted(parts, reverse=True) if k)


def _key(hi: np.ndarray, lo: np.ndarray) -> np.ndarray:
    """One 64-bit key per 128-bit address (a hash: collisions only merge two addresses)."""
    with np.errstate(over="ignore"):
        return lo ^ (hi * np.uint64(0x9E3779B97F4A7C15))


def _short_conversation_share(q: PacketBatch) -> float:
    """Share of packets in conversations (address pair, port pair, protocol, either
    direction) too short to be one: unanswered, or TCP never past its first exchange."""
    a, b = _key(q.src_hi, q.src_lo), _key(q.dst_hi, q.dst_lo)
    ports = np.minimum(q.sport, q.dport).astype(np.uint64) << np.uint64(16) | \
        np.maximum(q.sport, q.dport).astype(np.uint64)
    with np.errstate(over="ignore"):
        key = (np.minimum(a, b) * np.uint64(31) + np.maximum(a, b)) * np.uint64(1_000_003) \
            + ports * np.uint64(257) + q.proto.astype(np.uint64)
    _, inverse, counts = np.unique(key, return_inverse=True, return_counts=True)
    # a TCP connection takes three packets to open; other protocols answer in a second one
    short = counts[inverse] <= np.where(q.proto == PROTO_TCP, 2, 1)
    return float(short.mean()) if len(key) else 0.0
