"""Which MAC address carries each IP address, learned from all traffic, batch at a time.

An ARP-spoofing man in the middle shows up less in its few ARP packets than in everything
after them: the traffic it relays keeps its IP addresses but travels with the attacker's MAC.
arpwatch reports this as "changed ethernet address"; here every packet whose IP address
recently changed the MAC it travels with carries a decaying mark, so the relayed traffic itself
stands out, not only the poisoning packet. Packets that still travel with the MAC the address
had before (the *incumbent*: the real host, answering its peers directly while another MAC
claims its address) carry no mark; the newcomer becomes the incumbent once the binding has
held ``settle_half_lives`` half-lives without change (a replaced device, a moved VM). Without
this, a lab server's own replies during an ARP spoof were 3,413 of the 3,946 false flags of
the another-run case (docs/drift.md).

State lives per slot of the caller's key table (one slot per host address), so it is bounded
like the rest of the context state.
"""

from __future__ import annotations

import numpy as np


class MacBindings:
    """Per host slot: the MAC last seen with it and when that MAC last changed.

    >>> b = MacBindings(capacity=4, half_life=10.0)
    >>> slots = np.array([0, 0, 0, 1])
    >>> macs = np.array([5, 5, 9, 7], dtype=np.uint64)
    >>> b.update(slots, macs, np.array([0.0, 1.0, 2.0, 2.0])).tolist()
    [0.0, 0.0, 1.0, 0.0]
    >>> b.update(np.array([0]), np.array([9], dtype=np.uint64), np.array([12.0])).tolist()
    [0.5]
    >>> b.update(np.array([0, 0]), np.array([5, 9], dtype=np.uint64), np.array([13.0, 14.0])
    ...          ).tolist()  # the incumbent's own packet carries no mark
    [0.0, 1.0]
    """

    def __init__(self, capacity: int, half_life: float, settle_half_lives: float = 5.0) -> None:
        self.half_life = half_life
        self.settle = settle_half_lives * half_life
        self.mac = np.zeros(capacity, dtype=np.uint64)  # 0 = none seen yet
        self.incumbent = np.zeros(capacity, dtype=np.uint64)  # the MAC before the changes
        self.changed_at = np.full(capacity, -np.inf)

    def reset(self, slots: np.ndarray) -> None:
        """Forget recycled slots (their key table gave them to new hosts)."""
        self.mac[slots] = 0
        self.incumbent[slots] = 0
        self.changed_at[slots] = -np.inf

    def update(self, slots: np.ndarray, macs: np.ndarray, ts: np.ndarray) -> np.ndarray:
        """float [n]: ``2 ** (-age / half_life)`` of the latest MAC change of each packet's
        host up to that packet (1 on the packet that changes it), 0 when it never changed or
        the packet travels with the incumbent MAC (as of this batch's start). Packets with MAC
        0 (none on this link type) neither observe nor change a binding."""
        out = np.zeros(len(slots))
        seen = np.flatnonzero(macs != 0)
        if len(seen) == 0:
            return out
        order = seen[np.argsort(slots[seen], kind="stable")]
        s, m, t = slots[order], macs[order], ts[order]
        n = len(order)
        starts = np.ones(n, dtype=bool)
        starts[1:] = s[1:] != s[:-1]
        prev = np.empty(n, dtype=np.uint64)
        prev[1:] = m[:-1]
        prev[starts] = self.mac[s[starts]]
        changed = (prev != m) & (prev != 0)
        latest = np.maximum.accumulate(np.where(changed, np.arange(n), -1))
        first = np.maximum.accumulate(np.where(starts, np.arange(n), 0))
        since = np.where(latest >= first, t[np.maximum(latest, 0)], self.changed_at[s])
        # the MAC held since settle seconds before this packet took over; a new host: its first
        before = self.mac[s]
        settled = (before != 0) & (t - self.changed_at[s] >= self.settle)
        incumbent = np.where(settled, before, self.incumbent[s])
        incumbent = np.where(incumbent == 0, m[first], incumbent)
        out[order] = np.where(m == incumbent, 0.0,
                              np.exp2(-np.maximum(t - since, 0.0) / self.half_life))
        last = np.append(np.flatnonzero(starts)[1:] - 1, n - 1)
        self.mac[s[last]] = m[last]
        self.changed_at[s[last]] = since[last]
        self.incumbent[s[last]] = incumbent[last]
        return out
