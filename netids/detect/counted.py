"""What counts as evidence: inputs that read as typical on some packets, and inputs whose
surprise is capped. Training's calibration and the detector read surprises through the same
functions, so a model is calibrated on what it scores (docs/detector.md, "From error to
score")."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from netids.detect.packets import PacketBatch

# The services among scaling.NETWORK_FIELDS (protocol, ports): no value, seen or not, is more
# surprising than one packet in a thousand on that input. A new service is weak evidence
# alone, strong beside other signs; a scan's many new ports are told by its rates. ICMP types
# are not capped: an unknown type is how crafted ICMP shows, and an assigned one a network
# never used is rare enough.
SERVICE_FIELDS = ("protocol", "sport_class", "dport_class")
SERVICE_SURPRISE_CAP = -math.log(1e-3)


def service_inputs(names: Sequence[str]) -> np.ndarray:
    """Positions of the :data:`SERVICE_FIELDS` among model input ``names``.

    >>> service_inputs(["length", "protocol", "icmp_type", "dport_class"]).tolist()
    [1, 3]
    """
    return np.array([j for j, name in enumerate(names) if name in SERVICE_FIELDS], np.intp)


def cap_service_surprise(surprise: np.ndarray, services: np.ndarray) -> np.ndarray:
    """``surprise`` [n, k] with its ``services`` columns capped at
    :data:`SERVICE_SURPRISE_CAP` (in place; returned). Training and the detector both read
    surprises through it.

    >>> cap_service_surprise(np.array([[2.0, 30.0, 30.0]]), np.array([0, 1])).round(2).tolist()
    [[2.0, 6.91, 30.0]]
    """
    if len(services):
        surprise[:, services] = np.minimum(surprise[:, services], SERVICE_SURPRISE_CAP)
    return surprise


def as_counted(surprise: np.ndarray, mean: np.ndarray, services: np.ndarray,
               packet_roles: np.ndarray, uncounted: dict[int, np.ndarray]) -> np.ndarray:
    """``surprise`` [n, k] as it counts (in place; returned): the ``services`` columns capped
    (:func:`cap_service_surprise`), and on the rows of each role (``packet_roles``, see
    :func:`roles`) its ``uncounted`` columns (:func:`uncounted_inputs`) at normal traffic's
    ``mean``, where they count for nothing. The detector scores through it and training
    calibrates through it; what it returns is also what the words tell, so a packet is
    explained by what counted.

    >>> as_counted(np.full((2, 3), 9.0), np.array([1.0, 2.0, 3.0]), np.array([0]),
    ...            np.array([ANSWERING, 0]), {ANSWERING: np.array([1])}).round(2).tolist()
    [[6.91, 2.0, 9.0], [6.91, 9.0, 9.0]]
    """
    cap_service_surprise(surprise, services)
    return set_uncounted(surprise, packet_roles, uncounted, mean)


def set_uncounted(values: np.ndarray, packet_roles: np.ndarray,
                  uncounted: dict[int, np.ndarray], typical: np.ndarray) -> np.ndarray:
    """``values`` [n, k] with each role's ``uncounted`` columns set, on that role's rows, to
    their ``typical`` [k] value (in place; returned): the one rule of what counts for
    nothing, for the surprise (:func:`as_counted`) and the distance past the training range
    (:func:`~netids.detect.scaling.past_range`).

    >>> set_uncounted(np.ones((2, 2)), np.array([1, 0]), {1: np.array([1])},
    ...               np.zeros(2)).tolist()
    [[1.0, 0.0], [1.0, 1.0]]
    """
    for role, columns in uncounted.items():
        rows = np.flatnonzero(packet_roles == role)
        if len(rows) and len(columns):
            values[np.ix_(rows, columns)] = typical[columns]
    return values


ANSWERING, REQUESTING = 1, 2  # packet roles (roles); 0: neither
# where clients' ports start: Linux's default range is 32768-60999, IANA's (Windows, BSD)
# 49152-65535; services answer from below it (NAT-T's 4500 to a client's 1813 is a reply)
EPHEMERAL = 32768
SOCKET_RATE, FLOW_PACKETS = "sock_rate_100s", 8  # a socket this busy (100 s half-life) flows


def roles(tcp_flags: np.ndarray, proto: np.ndarray, sport: np.ndarray, dport: np.ndarray,
          flows: np.ndarray) -> np.ndarray:
    """int8 per packet: :data:`ANSWERING` for TCP acknowledging its peer (:func:`answering`),
    :data:`REQUESTING` for UDP from a client's port (:data:`EPHEMERAL` or above) to a lower
    one on a socket that already ``flows`` (:func:`flowing`): a client asking a service it
    talks to, no reply, asked for or not. A scan's probes each open a socket and keep what
    they show. Else 0. Ports are -1 where absent.

    >>> roles(np.array([0x10, 0x02, -1, -1, -1, -1, -1]), np.array([6, 6, 17, 17, 17, 17, 17]),
    ...       np.array([443, 5, 50000, 53, 500, 4500, 50000]),
    ...       np.array([5, 443, 53, 50000, 500, 1813, 53]),
    ...       np.array([True] * 6 + [False])).tolist()
    [1, 0, 2, 0, 0, 0, 0]
    """
    out = np.zeros(len(tcp_flags), np.int8)
    out[answering(tcp_flags)] = ANSWERING
    dport, sport = np.asarray(dport), np.asarray(sport)
    out[(np.asarray(proto) == 17) & (dport >= 0) & (sport >= EPHEMERAL) & (sport > dport)
        & flows] = REQUESTING
    return out


def flowing(features: np.ndarray, names: Sequence[str]) -> np.ndarray:
    """bool per packet: its socket carried :data:`FLOW_PACKETS` or more (this one included),
    by the longest window's decayed count, in ``features`` [n, F] named ``names`` (all False
    without that window).

    >>> flowing(np.array([[0.01], [0.2]]), ["sock_rate_100s"]).tolist()
    [False, True]
    """
    if SOCKET_RATE not in names:
        return np.zeros(len(features), bool)
    # a decayed count c reads as the rate c * lambda * ln 2 (netids.detect.context)
    return features[:, list(names).index(SOCKET_RATE)] >= FLOW_PACKETS * 0.01 * math.log(2)


def uncounted_inputs(names: Sequence[str]) -> dict[int, np.ndarray]:
    """For each role of :func:`roles`, the positions among ``names`` that count for nothing on
    its packets: on packets answering their peer, the conversation's rates
    (:func:`conversation_inputs`); on UDP requests, the destination's rate of replies nobody
    asked for (:func:`unsolicited_inputs`)."""
    return {ANSWERING: conversation_inputs(names), REQUESTING: unsolicited_inputs(names)}


def unsolicited_inputs(names: Sequence[str]) -> np.ndarray:
    """Positions of the destination's rates of replies nobody asked for: no evidence on a
    request. A client asking a server that a flood of unasked replies hits asks as it always
    did; the flood's own packets are replies (a later lab run's iperf3 clients had 3,200 UDP
    requests to a server flagged as a "reflection flood" while the lab's attacks reached it,
    docs/drift.md).

    >>> unsolicited_inputs(["dst_rate_1s", "dst_unsolicited_rate_1s", "length"]).tolist()
    [1]
    """
    return np.array([j for j, name in enumerate(names)
                     if name.startswith("dst_unsolicited_rate_")], np.intp)


def conversation_inputs(names: Sequence[str]) -> np.ndarray:
    """Positions of the inputs that measure packet rates a conversation makes: its own (host
    pair, socket) and those of its two ends (source, destination), and the rate of replies
    nobody asked for reaching the destination: a TCP packet acknowledging its peer was asked
    for, so a flood of unasked replies hitting its destination says nothing about it (the
    dev mix's camera had 1,817 packets of its own TLS sessions flagged as a "reflection
    flood" while amplified replies hit it).

    On a TCP packet that answers its peer (:func:`answering`) they measure a transfer both
    sides take part in, paced by the peer's acknowledgements at whatever speed the link gives:
    no evidence of an attack, yet the surprise that made a model trained on slower networks
    flag most of a faster network's traffic (docs/drift.md). Floods keep their evidence: their
    packets open (SYN), reply unasked (SYN-ACK, UDP, ICMP) or reset; a spoofed flood of ACKs
    still brings its target new sources each second. What is given up: a flood of ACKs from
    one real source to one target counts only by its sizes and timing.

    >>> conversation_inputs(["src_rate_1s", "src_syn_rate_1s", "pair_rate_1s", "sock_rate_10s",
    ...                      "dst_new_src_rate_1s"]).tolist()
    [0, 2, 3]
    """
    return np.array([j for j, name in enumerate(names)
                     if name.startswith(("pair_rate_", "sock_rate_", "src_rate_", "dst_rate_",
                                         "dst_unsolicited_rate_"))],
                    np.intp)


def packet_roles(packets: PacketBatch, features: np.ndarray,
                 names: Sequence[str]) -> np.ndarray:
    """:func:`roles` of a batch's packets, their context ``features`` named ``names``."""
    return roles(packets.tcp_flags, packets.proto, packets.sport, packets.dport,
                 flowing(features, names))


def answering(tcp_flags: np.ndarray) -> np.ndarray:
    """bool per packet: TCP acknowledging its peer without opening or resetting (ACK, no SYN
    or RST); ``tcp_flags`` is -1 where the packet is not TCP.

    >>> answering(np.array([0x18, 0x10, 0x12, 0x02, 0x14, -1])).tolist()
    [True, True, False, False, False, False]
    """
    flags = np.asarray(tcp_flags)
    return (flags >= 0) & (flags & 0x10 != 0) & (flags & 0x06 == 0)
