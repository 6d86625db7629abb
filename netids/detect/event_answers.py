"""Which anomalous packets answer a conversation another host opened, so that they join the
opener's event (a scanned host's resets, a flooded server's SYN-ACKs) instead of naming the
victim as the source of an event of its own. Pure; used by :mod:`netids.detect.events`."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from netids.detect.sketches import hash64


def answers(held: Iterable[tuple], src: np.ndarray, dst: np.ndarray, ptag: np.ndarray,
            ts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Which anomalous packets answer a conversation another host opened.

    Returns ``opener`` [n]: for an answer to an earlier packet of this batch, that packet's
    position (-1 otherwise), and ``open_key`` [n, 8]: for an answer to an event already
    open, 1 then that event's key (0 otherwise). The opener of a conversation (host pair
    and protocol) is the host whose anomalous packet came first; an open event's source
    opened every conversation it covers (all of its targets', when they merged).
    """
    n = len(src)
    opener = np.full(n, -1, dtype=np.int64)
    open_key = np.zeros((n, 8), dtype=np.uint64)
    tag = ptag.astype(np.int64).view(np.uint64)
    # each conversation's packets, its earliest one first
    fwd = (src[:, 0] < dst[:, 0]) | ((src[:, 0] == dst[:, 0]) & (src[:, 1] <= dst[:, 1]))
    lo, hi = np.where(fwd[:, None], src, dst), np.where(fwd[:, None], dst, src)
    convo = hash64(lo[:, 0], lo[:, 1], hi[:, 0], hi[:, 1], tag)
    _, inv = np.unique(convo, return_inverse=True)
    inv = inv.ravel()
    order = np.lexsort((ts, inv))  # by conversation (numbered 0..), then time
    starts = np.ones(n, dtype=bool)
    starts[1:] = inv[order][1:] != inv[order][:-1]
    head = order[starts]  # the earliest packet of each conversation, by its number
    first = head[inv]
    answer = fwd != fwd[first]
    opener[answer] = first[answer]
    keys_held = list(held)
    if not keys_held:
        return opener, open_key
    # conversations an open event covers were opened by that event's source
    keys = np.array(keys_held, dtype=np.uint64)  # [e, 7], oldest first
    held = np.zeros((len(head), 8), dtype=np.uint64)  # per conversation: 1, the event key
    hs, hd, ht = src[head], dst[head], tag[head]
    ev = _event_of(keys, hs, hd, ht)
    ev_back = _event_of(keys, hd, hs, ht)
    by_source = ev >= 0
    ev = np.where(by_source, ev, ev_back)
    held[ev >= 0, 0] = 1
    held[ev >= 0, 1:] = keys[ev[ev >= 0]]
    opener_fwd = fwd[head] == by_source  # the direction its opener talks in
    covered = held[inv, 0] == np.uint64(1)
    opener[covered] = -1
    theirs = covered & (fwd != opener_fwd[inv])
    open_key[theirs] = held[inv[theirs]]
    return opener, open_key

def _event_of(keys: np.ndarray, a: np.ndarray, b: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Per row, the open event (a row of ``keys``, -1 for none) in which host ``a`` talks to
    host ``b`` over tag ``t``: the pair's own event, else ``a``'s as a source of many, else
    ``b``'s as a target of many; among equals the newest."""
    flag = keys[:, 6]
    found = np.full(len(a), -1, dtype=np.int64)
    for merged, cols, hosts in ((0, [0, 1, 2, 3, 4], [a, b]), (2, [0, 1, 4], [a]),
                                (1, [2, 3, 4], [b])):
        rows = np.flatnonzero(flag == merged)[::-1]  # newest first: np.unique keeps it
        if len(rows) == 0:
            continue
        known, first = np.unique(hash64(*(keys[rows, c] for c in cols)), return_index=True)
        words = [w for h in hosts for w in (h[:, 0], h[:, 1])] + [t]
        want = hash64(*words)
        at = np.minimum(np.searchsorted(known, want), len(known) - 1)
        hit = (known[at] == want) & (found < 0)
        found[hit] = rows[first[at[hit]]]
    return found


def answered_tag(proto: np.ndarray, icmp_type: np.ndarray, icmp_code: np.ndarray,
                 ptag: np.ndarray, udp: int, other_ip: int) -> np.ndarray:
    """``ptag`` with each ICMP "unreachable" tagged as the protocol it answers, so that it
    joins the conversation it refuses: port unreachable answers UDP (``udp``), protocol
    unreachable a protocol scan (``other_ip``); the others (host, network, filtered) stay
    ICMP, since they may answer anything (RFC 792, RFC 4443).

    >>> answered_tag(np.array([1, 1, 58, 1]), np.array([3, 3, 1, 8]), np.array([3, 2, 4, 0]),
    ...              np.array([1, 1, 58, 1]), 17, 256).tolist()
    [17, 256, 17, 1]
    """
    v4 = (proto == 1) & (icmp_type == 3)
    v6 = (proto == 58) & (icmp_type == 1)
    port = (v4 & (icmp_code == 3)) | (v6 & (icmp_code == 4))
    return np.where(port, udp, np.where(v4 & (icmp_code == 2), other_ip, ptag))
