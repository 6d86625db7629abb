"""What counts as evidence: inputs that read as typical on some packets, and inputs whose
surprise is capped. Training's calibration and the detector read surprises through the same
functions, so a model is calibrated on what it scores (docs/detector.md, "From error to
score")."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

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
               answering_rows: np.ndarray, conversation: np.ndarray) -> np.ndarray:
    """``surprise`` [n, k] as it counts (in place; returned): the ``services`` columns capped
    (:func:`cap_service_surprise`), the ``conversation`` columns of the rows answering their
    peer at normal traffic's ``mean``, where they count for nothing. The detector scores
    through it and training calibrates through it; what it returns is also what the words
    tell, so a packet is explained by what counted.

    >>> as_counted(np.full((2, 3), 9.0), np.array([1.0, 2.0, 3.0]), np.array([0]),
    ...            np.array([True, False]), np.array([1])).round(2).tolist()
    [[6.91, 2.0, 9.0], [6.91, 9.0, 9.0]]
    """
    cap_service_surprise(surprise, services)
    if len(conversation):
        surprise[np.ix_(np.flatnonzero(answering_rows), conversation)] = mean[conversation]
    return surprise


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


def answering(tcp_flags: np.ndarray) -> np.ndarray:
    """bool per packet: TCP acknowledging its peer without opening or resetting (ACK, no SYN
    or RST); ``tcp_flags`` is -1 where the packet is not TCP.

    >>> answering(np.array([0x18, 0x10, 0x12, 0x02, 0x14, -1])).tolist()
    [True, True, False, False, False, False]
    """
    flags = np.asarray(tcp_flags)
    return (flags >= 0) & (flags & 0x10 != 0) & (flags & 0x06 == 0)
