"""Learning the network in place: the first live capture without a model trained here.

While it learns, the shipped model still judges every packet, but only kinds whose evidence
does not depend on what is normal on this network are alerted (:data:`ALERTED_KINDS`: scans,
sweeps, floods, spoofing, malformed packets); every other flag is counted by kind and held. The
packets it keeps to train on leave out every alerted packet and, around each alert, all the
traffic of the address that raised it, so an attack seen while learning is not learned as
normal. When :meth:`Learner.ready` (enough time and packets), the controller trains on
:meth:`Learner.data` in a background process. Pure: batches and clock readings in, state out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from netids.detect.dns import DnsRecord
from netids.detect.event_records import BEHAVIOUR_KINDS
from netids.detect.explain import SCANS
from netids.detect.packets import PacketBatch, is_ip, parse_ip
from netids.detect.scored import ScoredBatch
from netids.training.train import MIN_PACKETS

# kinds named by what the packets do wherever they are, not by how far they are from this
# network's normal: alerted while learning. "target under flood" (a busy server's clients),
# "bogus address" (which addresses a network uses) and the "unusual ..." kinds are held.
ALERTED_KINDS = frozenset({*SCANS, "flood", "reflection flood", "spoofed flood", "ARP spoofing",
                           "malformed packet",
                           # packets a scanner's or a guesser's fixed evidence flags
                           # (netids.detect.packet_behaviour); beaconing is held
                           "scan", "brute force"})
# the connection layer's scans and password guessing, and the payload checks, count fixed
# evidence (Zeek's and simple-scan's numbers, netids.detect.behaviour; libinjection's
# verdicts, netids.detect.payload): they are alerted while learning too, and
# never pass through the packet filter below
BEHAVIOUR_ALERTED = frozenset({BEHAVIOUR_KINDS[k] for k in (
    "vertical_scan", "horizontal_scan", "scan", "slow_scan", "brute_force",
    "login_after_guessing", "web_attack", "malware_download", "heartbleed")})
HOLDING = ("learning", "training", "review")  # phases in which other kinds are held
MAX_HOSTS = 65_536  # distinct addresses counted exactly; beyond, "65,536+"
MAX_SUSPECTS = 4096  # addresses whose traffic around their alerts is left out, at most
SUSPECT_PAD = 10.0  # seconds before an address's first alert and after its last left out


@dataclass(frozen=True, slots=True)
class LearnConfig:
    """How long learning lasts and how much it keeps."""

    seconds: float = 600.0  # of live capture before training (--learn-minutes)
    min_packets: int = MIN_PACKETS  # kept packets training needs; learning waits for them
    max_packets: int = 500_000  # kept packets at most (memory); later ones are seen, not kept


@dataclass(slots=True)
class LearningState:
    """What the dashboard's learning card shows; the controller's training state takes over
    for the training itself (loss curve, report, review)."""

    phase: str = "off"  # off, learning, training, review, done, failed, skipped, stopped
    seconds: float = 600.0  # to learn for
    started: float = math.nan  # monotonic clock at the start
    packets: int = 0  # seen while learning
    kept: int = 0  # kept to train on
    excluded: int = 0  # of those, left out at the last try to train: near an alert
    hosts: int = 0  # distinct IP addresses seen (at most MAX_HOSTS)
    alerted: int = 0  # anomalous packets of ALERTED_KINDS
    held: dict[str, int] = field(default_factory=dict)  # anomalous packets held, by kind
    message: str = ""  # why learning ended when it did not train
    generation: int = 0

    @property
    def holding(self) -> bool:
        return self.phase in HOLDING

    def progress_text(self, now: float) -> str:
        """The card's headline.

        >>> s = LearningState("learning", 600.0, 0.0, packets=41_233, hosts=17)
        >>> s.progress_text(192.4)
        'Learning this network: 3 min 12 s of 10 min, 41,233 packets, 17 hosts'
        >>> replace(s, kept=5_000, hosts=MAX_HOSTS).progress_text(700.0)
        ... # doctest: +NORMALIZE_WHITESPACE
        'Learning this network: 10 min of 10 min, 41,233 packets, 65,536+ hosts; waiting for
         3,000 more packets to train on'
        """
        elapsed = min(max(now - self.started, 0.0), self.seconds)
        hosts = f"{self.hosts:,}{'+' if self.hosts >= MAX_HOSTS else ''}"
        text = (f"Learning this network: {duration(elapsed)} of {duration(self.seconds)}, "
                f"{self.packets:,} packets, {hosts} host{'' if self.hosts == 1 else 's'}")
        short = MIN_PACKETS - (self.kept - self.excluded)
        if now - self.started >= self.seconds and short > 0:
            text += f"; waiting for {short:,} more packets to train on"
        return text

    def held_text(self) -> str:
        """What learning alerts and what it holds, in words.

        >>> LearningState(alerted=12, held={"unusual port": 900, "unusual TTL": 4}).held_text()
        ... # doctest: +NORMALIZE_WHITESPACE
        'Alerting only on scans, sweeps, floods, spoofing and malformed packets (12 packets so
         far); held back until the network is learned: unusual port 900, unusual TTL 4'
        """
        text = ("Alerting only on scans, sweeps, floods, spoofing and malformed packets "
                f"({self.alerted:,} packets so far)")
        if self.held:
            ranked = sorted(self.held.items(), key=lambda kv: -kv[1])
            text += "; held back until the network is learned: " + ", ".join(
                f"{kind} {n:,}" for kind, n in ranked)
        return text


class Learner:
    """Filters and collects the batches of one learning session (pipeline thread)."""

    def __init__(self, state: LearningState, config: LearnConfig) -> None:
        self.state, self.config = state, config
        self._packets: list[PacketBatch] = []
        self._features: list[np.ndarray] = []
        self._hosts: set[tuple[int, int]] = set()
        self._suspects: dict[int, list[float]] = {}  # address key -> [first, last alert]
        self._dns: list[DnsRecord] = []  # of the kept packets, for the DNS detectors

    def observe(self, scored: ScoredBatch) -> ScoredBatch:
        """The batch with held kinds no longer anomalous; counts, keeps what is clean."""
        if not self.state.holding:
            return scored
        alerted, out = hold(scored)
        s = self.state
        for kind in (k for k, keep in zip(scored.kinds, alerted, strict=True) if not keep):
            s.held[kind] = s.held.get(kind, 0) + 1
        s.alerted += int(alerted.sum())
        if s.phase == "learning":
            self._learn(scored, scored.anomaly_index[alerted])
        s.generation += 1
        return out

    def _learn(self, scored: ScoredBatch, alerted: np.ndarray) -> None:
        p, s = scored.packets, self.state
        s.packets += len(p) + (len(scored.unscored) if scored.unscored is not None else 0)
        if len(self._hosts) < MAX_HOSTS:
            ip = p.ip_version > 0
            for hi, lo in ((p.src_hi, p.src_lo), (p.dst_hi, p.dst_lo)):
                pairs = np.unique(np.stack([hi[ip], lo[ip]], axis=1), axis=0)
                self._hosts.update(map(tuple, pairs[:MAX_HOSTS - len(self._hosts)].tolist()))
            s.hosts = len(self._hosts)
        for key, ts in zip(address_keys(p.src_hi, p.src_lo)[alerted].tolist(),
                           p.ts[alerted].tolist(), strict=True):
            span = self._suspects.get(key)
            if span is not None:
                span[0], span[1] = min(span[0], ts), max(span[1], ts)
            elif len(self._suspects) < MAX_SUSPECTS:
                self._suspects[key] = [ts, ts]
        room = self.config.max_packets - s.kept
        keep = np.ones(len(p), dtype=bool)
        keep[alerted] = False
        keep[np.flatnonzero(keep)[room:]] = False
        if keep.any():
            self._packets.append(p.take(keep))
            self._features.append(scored.features[keep])
            s.kept += int(keep.sum())
            first = scored.frames.first_index  # a record's index - first: its row here
            self._dns += [r for r in scored.dns
                          if 0 <= r.index - first < len(keep) and keep[r.index - first]]

    def ready(self, now: float) -> bool:
        """Learnt long enough, with enough packets kept, to train."""
        s = self.state
        return (s.phase == "learning" and now - s.started >= s.seconds
                and s.kept - s.excluded >= self.config.min_packets)

    def data(self) -> tuple[PacketBatch, np.ndarray] | None:
        """The kept packets and features, without the traffic of any address around its
        alerts (its first probes came before the model noticed); notes how many that left out,
        so :meth:`ready` waits for as many more."""
        if not self._packets:
            return None
        packets, features = PacketBatch.concat(self._packets), np.concatenate(self._features)
        clean = np.ones(len(packets), dtype=bool)
        for hi, lo in ((packets.src_hi, packets.src_lo), (packets.dst_hi, packets.dst_lo)):
            clean &= ~near_alert(address_keys(hi, lo), packets.ts, *self._suspect_spans())
        self.state.excluded = int((~clean).sum())
        return packets.take(clean), features[clean]

    def dns_records(self) -> list[DnsRecord]:
        """The DNS queries and answers of the kept packets, but those of a client around its
        alerts, as :meth:`data` leaves its packets out: what the DNS detectors learn."""
        if not self._dns:
            return []
        hi, lo = np.array([parse_ip(r.client) if is_ip(r.client) else (0, 0)
                           for r in self._dns], dtype=np.uint64).T
        ts = np.array([r.ts for r in self._dns])
        near = near_alert(address_keys(hi, lo), ts, *self._suspect_spans())
        return [r for r, n in zip(self._dns, near.tolist(), strict=True) if not n]

    def _suspect_spans(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(sorted suspect address keys, first, last): their alerts' time spans, padded."""
        keys = np.array(sorted(self._suspects), dtype=np.uint64)
        first = np.array([self._suspects[k][0] for k in keys.tolist()]) - SUSPECT_PAD
        last = np.array([self._suspects[k][1] for k in keys.tolist()]) + SUSPECT_PAD
        return keys, first, last


def needs_learning(active: Path, shipped: Path, versions: list[dict]) -> bool:
    """Whether the active model is the shipped one and no model was trained here (a version
    whose metadata says what it was trained on: the training page's or a learned one).

    >>> needs_learning(Path("models/default.pt"), Path("models/default.pt"), [{}])
    True
    >>> needs_learning(Path("models/default.pt"), Path("models/default.pt"),
    ...                [{}, {"packets": 41233, "trained_here": "learning"}])
    False
    >>> needs_learning(Path("models/office.pt"), Path("models/default.pt"), [])
    False
    """
    if active.resolve() != shipped.resolve():
        return False
    return not any(d.get("trained_here") or d.get("packets") for d in versions)


def hold(scored: ScoredBatch) -> tuple[np.ndarray, ScoredBatch]:
    """Which anomalous packets are alerted (their kind is in :data:`ALERTED_KINDS`), and the
    batch with the others no longer anomalous (their scores are kept)."""
    alerted = np.array([k in ALERTED_KINDS for k in scored.kinds], dtype=bool)
    if alerted.all():
        return alerted, scored
    anomalous = scored.anomalous.copy()
    anomalous[scored.anomaly_index[~alerted]] = False
    pick = np.flatnonzero(alerted).tolist()
    return alerted, replace(scored, anomalous=anomalous,
                            kinds=[scored.kinds[i] for i in pick],
                            explanations=[scored.explanations[i] for i in pick])


def address_keys(hi: np.ndarray, lo: np.ndarray) -> np.ndarray:
    """One 64-bit key per address column pair (IPv6 halves mixed; IPv4 keys are exact).

    >>> address_keys(np.array([0], np.uint64), np.array([0x0A000001], np.uint64)).tolist()
    [167772161]
    """
    with np.errstate(over="ignore"):
        return lo.astype(np.uint64) ^ (hi.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15))


def near_alert(keys: np.ndarray, ts: np.ndarray, suspects: np.ndarray, first: np.ndarray,
               last: np.ndarray) -> np.ndarray:
    """Per packet: its address is a suspect's (sorted ``suspects``) and its time lies in that
    suspect's ``[first, last]``.

    >>> near_alert(np.array([5, 7, 5], np.uint64), np.array([1.0, 1.0, 50.0]),
    ...            np.array([5], np.uint64), np.array([0.0]), np.array([20.0])).tolist()
    [True, False, False]
    """
    if len(suspects) == 0:
        return np.zeros(len(keys), dtype=bool)
    at = np.minimum(np.searchsorted(suspects, keys), len(suspects) - 1)
    return (suspects[at] == keys) & (ts >= first[at]) & (ts <= last[at])


def duration(seconds: float) -> str:
    """A duration as the card says it.

    >>> duration(192.4), duration(600), duration(12), duration(3725)
    ('3 min 12 s', '10 min', '12 s', '62 min 5 s')
    """
    minutes, rest = divmod(int(round(seconds)), 60)
    if not minutes:
        return f"{rest} s"
    return f"{minutes} min" + (f" {rest} s" if rest else "")
