"""IP-to-MAC bindings seen in ARP, to flag a binding that changes (spoofing) and a MAC that
claims many addresses, in bounded memory and constant time per packet.

Each MAC's claims are kept in the order they were last seen, so the ones older than ``hold``
leave from the front as time passes (an ARP flood from one MAC with a new sender address per
packet used to rescan every claim on every packet), and a MAC holds at most ``max_claims``
of them: past that its oldest claims are dropped and counted in :attr:`ArpWatch.evicted`.

>>> import numpy as np
>>> w = ArpWatch(hold=300.0, capacity=4096, max_claims=2)
>>> w.observe([(0, 1, 7, 0.0), (1, 2, 7, 1.0), (2, 3, 7, 2.0), (3, 1, 8, 3.0)])
[(0.0, 1.0), (0.0, 2.0), (0.0, 2.0), (1.0, 1.0)]
>>> w.evicted
1
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np

from netids.detect.keytable import TableStats
from netids.detect.packets import ETHERTYPE_ARP, PacketBatch


class ArpWatch:
    """``update`` gives, per packet, (binding changed within ``hold``, IPs its MAC claims)."""

    def __init__(self, hold: float, capacity: int, max_claims: int = 1024) -> None:
        self.hold, self.capacity, self.max_claims = hold, capacity, max_claims
        self.binding: dict[int, tuple[int, float]] = {}  # ip -> (mac, last seen)
        self.claims: dict[int, OrderedDict[int, float]] = {}  # mac -> {ip: last seen}, oldest first
        self.evicted = 0

    def update(self, p: PacketBatch) -> np.ndarray:
        out = np.zeros((len(p), 2), dtype=np.float32)
        rows = np.flatnonzero((p.ethertype == ETHERTYPE_ARP) & (p.arp_sha != 0))
        seen = self.observe(zip(rows.tolist(), p.src_lo[rows].tolist(),
                                p.arp_sha[rows].tolist(), p.ts[rows].tolist(), strict=True))
        if seen:
            out[rows] = seen
        return out

    def observe(self, packets) -> list[tuple[float, float]]:  # type: ignore[no-untyped-def]
        """(changed, claims) for each (row, ip, mac, time) in order."""
        result = []
        for _, ip, mac, t in packets:
            if ip & 0xFFFF_FFFF == 0:  # ARP probes announce 0.0.0.0: no binding
                result.append((0.0, 0.0))
                continue
            held = self.binding.get(ip)
            changed = held is not None and held[0] != mac and t - held[1] <= self.hold
            self.binding[ip] = (mac, t)
            claims = self.claims.get(mac)
            if claims is None:
                claims = self.claims[mac] = OrderedDict()
            claims[ip] = t
            claims.move_to_end(ip)
            while claims and t - next(iter(claims.values())) > self.hold:
                claims.popitem(last=False)
            if len(claims) > self.max_claims:
                claims.popitem(last=False)
                self.evicted += 1
            result.append((float(changed), float(len(claims))))
        if len(self.binding) > self.capacity:
            self._prune()
        return result

    def stats(self) -> TableStats:
        return TableStats("arp bindings", len(self.binding), self.capacity, self.evicted)

    def _prune(self) -> None:
        keep = sorted(self.binding.items(), key=lambda kv: kv[1][1])[-self.capacity // 2:]
        self.evicted += len(self.binding) - len(keep)
        self.binding = dict(keep)
        self.claims = dict(list(self.claims.items())[-self.capacity // 2:])
