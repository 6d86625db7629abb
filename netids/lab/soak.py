"""A soak session in the lab: normal traffic for many minutes with a round of attacks every
period (a spoofed flood, a wide scan, a burst of malformed packets), and the pure checks of
what a running netids made of it.

:func:`soak_lab` builds the lab network with its servers (torn down on exit, also after an
error or Ctrl-C); :func:`soak_traffic` runs the clients and the attack rounds and returns
when and where each attack ran. The checks (:func:`match_attacks`, :func:`rss_slope`,
:func:`percentile`) take plain numbers, so the benchmark and the test share them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from netids.lab.network import LabNetwork, remove_stale_namespaces
from netids.lab.scenario import (
    ATTACKER,
    CLIENTS,
    HOSTS,
    remove_resolv_confs,
    run_client,
    start_servers,
)

log = logging.getLogger(__name__)

FLOODS = frozenset({"flood", "spoofed flood", "target under flood", "bogus address"})
SCANS = frozenset({"port scan", "host sweep"})
MALFORMED = frozenset({"malformed packet"})

# frames whose headers are impossible: an IPv4 header length under 20 bytes, a total length
# shorter than the headers, a TCP data offset under 20 bytes, an ICMP code its type lacks
MALFORMED_SCRIPT = """
import sys
from scapy.all import ICMP, IP, TCP, UDP, Ether, Raw, sendp
dst, mac, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
make = (lambda i: IP(dst=dst, ihl=2) / TCP(sport=40000 + i, dport=80),
        lambda i: IP(dst=dst, len=24) / UDP(sport=40000 + i, dport=53) / Raw(b"x" * 40),
        lambda i: IP(dst=dst) / TCP(sport=40000 + i, dport=80, dataofs=2),
        lambda i: IP(dst=dst) / ICMP(type=3, code=77) / Raw(b"y" * 28))
frames = [Ether(dst=mac) / make[i % len(make)](i) for i in range(n)]
sendp(frames, iface="eth0", inter=0.002, verbose=False)
"""


@dataclass(frozen=True, slots=True)
class SoakAttack:
    """One attack of a round: the tool, its target host, and the event kinds that report it."""

    name: str
    target: str  # lab host name
    kinds: frozenset[str]
    budget: float  # seconds it may run at most
    argv: tuple[str, ...]  # run in the attacker host; "{name}": IP, "{name_mac}": MAC,
    # "{ports}": 2,000 ports, others each round (a scan of ports it has seen is not new)


ROUND = (
    SoakAttack("spoofed flood", "srv", FLOODS, 6,
               ("hping3", "-q", "-S", "-p", "80", "--rand-source", "-i", "u400", "-c", "7500",
                "{srv}")),
    SoakAttack("wide scan", "web2", SCANS, 12,
               ("nmap", "-sS", "-Pn", "-n", "-T4", "--max-retries", "1", "--max-rate", "3000",
                "-p", "{ports}", "{web2}", "{dns}")),
    SoakAttack("malformed burst", "c1", MALFORMED, 12,
               (sys.executable, "-c", MALFORMED_SCRIPT, "{c1}", "{c1_mac}", "200")),
)


@dataclass(frozen=True, slots=True)
class AttackRun:
    """An attack as it ran: what, from and to which address, when (wall-clock seconds)."""

    attack: SoakAttack
    attacker: str  # IP
    target: str  # IP
    start: float
    end: float


@dataclass(frozen=True, slots=True)
class SeenEvent:
    """What the checks need of a stored event (times in seconds since the epoch)."""

    kind: str
    src: str  # "" when many sources merged
    dst: str  # "" when many targets merged
    first: float
    last: float


@contextlib.contextmanager
def soak_lab() -> Iterator[LabNetwork]:
    """The lab network (see :mod:`netids.lab.scenario`) with its servers listening; torn
    down on exit, whatever ended it."""
    remove_stale_namespaces()
    with tempfile.TemporaryDirectory(prefix="netids-soak-") as tmp, LabNetwork(HOSTS) as net:
        try:
            start_servers(net, Path(tmp))
            yield net
        finally:
            remove_resolv_confs(net)


async def soak_traffic(net: LabNetwork, seconds: float, period: float = 60.0, *,
                       first: float = 10.0, seed: int = 0) -> list[AttackRun]:
    """Normal traffic from every client for ``seconds``; a round of :data:`ROUND` every
    ``period`` seconds, the first after ``first``. Returns the attacks as they ran."""
    rng = random.Random(seed)
    t0 = time.time()
    clients = [asyncio.create_task(run_client(net, c, rng.randrange(2**32), t0 + seconds))
               for c in CLIENTS]
    runs: list[AttackRun] = []
    try:
        at = t0 + first
        while at + sum(a.budget for a in ROUND) < t0 + seconds:
            await asyncio.sleep(max(0.0, at - time.time()))
            runs += await attack_round(net, len(runs) // len(ROUND))
            at += period
        await asyncio.sleep(max(0.0, t0 + seconds - time.time()))
    finally:
        for task in clients:
            task.cancel()
        await asyncio.gather(*clients, return_exceptions=True)
    return runs


async def attack_round(net: LabNetwork, number: int = 0) -> list[AttackRun]:
    """Run each attack of :data:`ROUND` in turn from the attacker host, a pause between.
    Round ``number`` scans its own 2,000 ports (1-2000, 2001-4000, ...)."""
    lo = 1 + number * 2000 % 64000
    names = {h.name: h.ip for h in net.hosts.values()} | {"ports": f"{lo}-{lo + 1999}"}
    names |= {f"{h.name}_mac": h.mac for h in net.hosts.values()}
    runs = []
    for attack in ROUND:
        argv = [a.format(**names) for a in attack.argv]
        start = time.time()
        log.info("soak attack %s", attack.name)
        with contextlib.suppress(TimeoutError):
            await net.exec(ATTACKER, *argv, timeout=attack.budget)
        runs.append(AttackRun(attack, net.ip(ATTACKER), net.ip(attack.target), start,
                              time.time()))
        await asyncio.sleep(2.0)
    return runs


def match_attacks(runs: Sequence[AttackRun], events: Sequence[SeenEvent], *,
                  slack: float = 5.0) -> list[list[SeenEvent]]:
    """For each attack, the events that report it: a kind of the attack's, a time span
    overlapping the attack's (widened by ``slack`` seconds for late packets), and the
    attacker as source or the target as destination (or many of them merged).

    >>> run = AttackRun(ROUND[1], "10.77.0.66", "10.77.0.11", 100.0, 110.0)
    >>> seen = [SeenEvent("port scan", "10.77.0.66", "", 104.0, 109.0),
    ...         SeenEvent("port scan", "10.77.0.66", "", 300.0, 301.0),
    ...         SeenEvent("flood", "10.77.0.66", "10.77.0.11", 104.0, 105.0)]
    >>> [len(m) for m in match_attacks([run], seen)]
    [1]
    """
    found = []
    for run in runs:
        found.append([
            e for e in events
            if e.kind in run.attack.kinds
            and e.first <= run.end + slack and e.last >= run.start - slack
            and (e.src in (run.attacker, "") or e.dst in (run.target, ""))
        ])
    return found


def rss_slope(times: Sequence[float], mib: Sequence[float], warmup: float) -> float:
    """MiB per minute of a least-squares line through the samples after ``warmup`` seconds
    from the first (0 with fewer than 3 of them).

    >>> round(rss_slope([0, 60, 120, 180, 240], [100, 500, 600, 601, 602], warmup=100), 2)
    1.0
    """
    t, m = np.asarray(times, float), np.asarray(mib, float)
    keep = t - t[0] >= warmup if len(t) else np.zeros(0, bool)
    if keep.sum() < 3:
        return 0.0
    return float(np.polyfit(t[keep] / 60.0, m[keep], 1)[0])


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (nearest rank, so a p99 is a latency that was measured).

    >>> percentile([0.1, 0.2, 0.3, 5.0], 99), percentile([], 99)
    (5.0, 0.0)
    """
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(np.ceil(q / 100 * len(ordered))) - 1)]
