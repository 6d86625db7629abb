"""DNS detectors on :class:`~netids.detect.dns.DnsRecord` records: tunnelling or C2 over DNS
(many distinct names under one domain) and NXDOMAIN bursts (a domain-generation algorithm
looking for its live C2).

*Tunnelling* follows RITA's "C2 over DNS" (activecm/rita ``default_config.hjson``
``c2_score_thresholds``: base 100 unique subdomains, low 500, medium 800, high 1000): RITA
counts distinct names per "tld" (its ``cutToFirstSignificantSubdomain``: the registered
domain) over its dataset; here they are counted per (client, registered domain) and, for
tunnels spread over several clients, per registered domain, within a window of
``DnsConfig.window`` (1 h) that starts at the key's first query and restarts once it is over.
An alert is due at 100 distinct names, at 50 when the names carry the marks of encoded data
(:func:`encoded`); its severity is RITA's grade of the count (low under 800, medium from
800, high from 1000). *NXDOMAIN bursts*: 50 distinct names answered NXDOMAIN to one client
within 60 s. That number is our own: Slips alerts on 10 NXDOMAINs per profile in its 1 h time
window, which the search-domain suffixes of ordinary resolvers reach on quiet networks.

Names under ``in-addr.arpa``, ``ip6.arpa`` and ``.local`` and DNS-SD service names (a
``_tcp``/``_udp``/``_dns-sd`` label) are never counted; ``learn`` leaves out the domains that
benign traffic already asks many names of (CDNs). State is bounded: at most ``capacity``
keys per table, the least recently used forgotten first.
"""

from __future__ import annotations

import math
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from netids.detect.behaviour_base import (
    BehaviourAlert,
    BoundedMap,
    Distinct,
    Suppressor,
    key_hash,
    span_text,
)
from netids.detect.dns import NXDOMAIN, DnsRecord

# second-level labels under which names are registered one level deeper (co.uk, com.au,
# ac.jp, gob.mx, ...) when the top level is a two-letter country code: a short list of the
# common patterns, not the full Public Suffix List
SECOND_LEVEL = frozenset({"co", "com", "net", "org", "gov", "edu", "ac", "or", "ne", "go",
                          "gob", "mil", "ltd", "plc", "sch", "nic", "gv"})
IGNORED_SUFFIXES = ("in-addr.arpa", "ip6.arpa", "local")
SERVICE_LABELS = frozenset({"_tcp", "_udp", "_dns-sd"})


@dataclass(frozen=True, slots=True)
class DnsConfig:
    """The DNS detectors' numbers (where each comes from: the module's docstring)."""

    base: int = 100  # distinct names under a domain within the window (RITA's base)
    medium: int = 800  # ... from which the alert is medium (RITA's "medium")
    high: int = 1000  # ... and high (RITA's "high")
    encoded_base: int = 50  # the count due when the names look encoded (see encoded())
    window: float = 3600.0  # seconds a (client, domain) count runs before restarting
    nx_count: int = 50  # distinct names answered NXDOMAIN to one client ...
    nx_window: float = 60.0  # ... within this many seconds: a burst
    nx_high: int = 250  # ... this many: high severity (and the answers kept a client)
    nx_capacity: int = 512  # clients whose NXDOMAIN answers are kept, at most
    learn_at: int = 20  # distinct names of a domain in benign traffic that make it normal
    capacity: int = 2048  # keys per table at most (least recently used forgotten first)
    exact_up_to: int = 128  # distinct names counted exactly per key (past the base), then
    # estimated (HyperLogLog, about 2 %): at most about 9 kB a key, 40 MB for both tables
    examples: int = 3  # example labels in a why
    sampled: int = 256  # queries a key's mean length and entropy are taken from, per window
    suppress_for: float = 3600.0  # one alert per key this long, unless it escalates
    escalation: float = 10.0


@dataclass(slots=True)
class _Tally:
    """Distinct names of one key in its current window, and what they look like."""

    start: float
    last: float
    server: str
    names: Distinct
    clients: Distinct
    queries: int = 0  # queries sampled (the first DnsConfig.sampled of the window)
    length: float = 0.0  # summed length of their subdomain parts
    entropy: float = 0.0  # summed entropy of their subdomain parts
    examples: tuple[str, ...] = ()

    @property
    def looks(self) -> tuple[float, float]:
        """Mean length and entropy of the sampled subdomain parts."""
        return self.length / max(self.queries, 1), self.entropy / max(self.queries, 1)

    def restart(self, ts: float, server: str) -> None:
        self.start = self.last = ts
        self.server, self.clients = server, Distinct(exact_up_to=8)
        self.names = Distinct(self.names.exact_up_to)
        self.queries, self.length, self.entropy, self.examples = 0, 0.0, 0.0, ()


class DnsDetector:
    """Tunnelling and NXDOMAIN bursts, from the DNS records of one stream.

    >>> d = DnsDetector()
    >>> qs = [DnsRecord(float(i), "10.0.0.9", "10.0.0.1", False, 0, 0, 16,
    ...                 f"{i:04x}deadbeefcafe0123456789ab.t.example.co.uk", i) for i in range(60)]
    >>> [(a.kind, a.count, a.targets) for a in d.update(qs)]
    [('dns_tunnel', 50, ('example.co.uk', '10.0.0.1'))]
    """

    def __init__(self, config: DnsConfig | None = None) -> None:
        self.config = c = config or DnsConfig()
        fresh = partial(_fresh, c.exact_up_to)
        self.pairs: BoundedMap[tuple[str, str], _Tally] = BoundedMap(c.capacity, fresh)
        self.domains: BoundedMap[str, _Tally] = BoundedMap(c.capacity, fresh)
        self.nx: BoundedMap[str, _Burst] = BoundedMap(c.nx_capacity,
                                                      lambda: _Burst(c.nx_high))
        self.learned: set[str] = set()  # domains benign traffic asks many names of
        self.suppressor = Suppressor(hold=c.suppress_for, factor=c.escalation,
                                     capacity=c.capacity)
        # alerts suppression held back since take_grown(), by key: the evidence an open
        # event grows by (at most one a key, so bounded by a batch's records)
        self.grown: dict[str, Callable[[], BehaviourAlert]] = {}

    def take_grown(self) -> list[BehaviourAlert]:
        """The latest held-back alert of each key since the last call (made now: the words
        of an alert nobody sees are not worth writing per query)."""
        grown, self.grown = list(self.grown.values()), {}
        return [make() for make in grown]

    def learn(self, records: list[DnsRecord]) -> None:
        """Take this network's normal from benign records: every domain asked
        ``learn_at`` or more distinct names is left out from then on (at most ``capacity``)."""
        names: dict[str, set[str]] = {}
        for r in records:
            if r.response or r.opcode != 0 or ignored(r.name):
                continue
            seen = names.setdefault(registered_domain(r.name), set())
            if len(seen) < self.config.learn_at:
                seen.add(r.name)
        busy = [d for d, s in names.items() if len(s) >= self.config.learn_at]
        self.learned.update(busy[: max(self.config.capacity - len(self.learned), 0)])

    def update(self, records: list[DnsRecord] | tuple[DnsRecord, ...]) -> list[BehaviourAlert]:
        """Fold in one batch's records (in packet order); the alerts due."""
        alerts: list[BehaviourAlert] = []
        for r in records:
            if r.opcode != 0 or ignored(r.name):
                continue
            if r.response and r.rcode == NXDOMAIN:
                alerts += self._nxdomain(r)
            elif not r.response:
                alerts += self._query(r)
        return alerts

    def _query(self, r: DnsRecord) -> list[BehaviourAlert]:
        domain = registered_domain(r.name)
        if domain in self.learned or domain == r.name:
            return []
        sub, name, client = r.name[: -len(domain) - 1], key_hash(r.name), key_hash(r.client)
        found = []
        for who, tally in ((r.client, self.pairs.get((r.client, domain))),
                           ("", self.domains.get(domain))):
            self._count(tally, r, sub, name, client)
            alert = self._tunnel(who, domain, tally)
            if alert is not None:
                found.append(alert)
        return found

    def _count(self, tally: _Tally, r: DnsRecord, sub: str, name: int, client: int) -> None:
        if r.ts - tally.start > self.config.window:  # new, or its window is over
            tally.restart(r.ts, r.server)
        before = tally.names.estimate
        tally.names.add(name)
        tally.clients.add(client)
        tally.last = max(tally.last, r.ts)
        if tally.queries < self.config.sampled:  # what the names look like: a sample
            tally.queries += 1
            tally.length += len(sub)
            tally.entropy += entropy(sub)
        if tally.names.estimate > before and len(tally.examples) < self.config.examples:
            tally.examples += (sub.split(".")[0],)

    def _tunnel(self, client: str, domain: str, t: _Tally) -> BehaviourAlert | None:
        c = self.config
        count = t.names.estimate
        if count < (c.encoded_base if encoded(*t.looks) else c.base) or (
                not client and t.clients.estimate < 2):  # one client: its own alert says it
            return None
        severity = "high" if count >= c.high else "medium" if count >= c.medium else "low"
        key = f"dns_tunnel\x1f{client}\x1f{domain}"
        return self._allow(key, t.last, severity, count,
                           partial(self._tunnel_alert, client, domain, t, severity, key))

    def _tunnel_alert(self, client: str, domain: str, t: _Tally, severity: str,
                      key: str) -> BehaviourAlert:
        count, (length, bits) = t.names.estimate, t.looks
        who = f"from {client}" if client else f"from {t.clients.estimate} clients"
        examples = ", ".join(_short(e) for e in t.examples)
        why = (f"{count:,} distinct names under {domain} asked {who} in "
               f"{span_text(t.last - t.start)} (e.g. {examples}); the part before the domain "
               f"is {length:.0f} characters and {bits:.1f} bits/character of entropy on "
               f"average{' (looks encoded)' if encoded(length, bits) else ''}: DNS tunnelling "
               f"or C2 over DNS (RITA alerts from {self.config.base} unique subdomains)")
        return BehaviourAlert("dns_tunnel", severity, client, (domain, t.server), "dns",
                              t.start, t.last, count, (), why, key)

    def _allow(self, key: str, now: float, severity: str, count: int,
               make: Callable[[], BehaviourAlert]) -> BehaviourAlert | None:
        """The alert if suppression lets it out; else kept (unmade) to grow its event."""
        if self.suppressor.allow(key, now, severity, count):
            self.grown.pop(key, None)
            return make()
        self.grown[key] = make
        return None

    def _nxdomain(self, r: DnsRecord) -> list[BehaviourAlert]:
        c = self.config
        burst = self.nx.get(r.client)
        burst.add(r.ts, r.name, c.nx_window)
        count = len(burst.names)
        if count < c.nx_count:
            return []
        severity = "high" if count >= c.nx_high else "medium"
        key = f"nxdomain_burst\x1f{r.client}"
        alert = self._allow(key, r.ts, severity, count,
                            partial(self._nx_alert, r, burst, severity, key))
        return [alert] if alert is not None else []

    def _nx_alert(self, r: DnsRecord, burst: _Burst, severity: str,
                  key: str) -> BehaviourAlert:
        names, first = sorted(burst.names), burst.seen[0][0]
        domains = Counter(registered_domain(n) for n in names).most_common(3)
        why = (f"{len(names):,} distinct names answered NXDOMAIN (no such name) to "
               f"{r.client} by {r.server} in {span_text(r.ts - first)} (e.g. "
               f"{', '.join(_short(n) for n in names[:3])}; under "
               f"{', '.join(d for d, _ in domains)}): a domain-generation algorithm (DGA) "
               f"looking for its command server, or a misbehaving resolver client")
        return BehaviourAlert("nxdomain_burst", severity, r.client, (r.server,), "dns",
                              first, r.ts, len(names), (), why, key)


class _Burst:
    """One client's NXDOMAIN answers in the last window: at most ``size`` of them, with a
    count per name, so the distinct names are known at O(1) a response."""

    __slots__ = ("seen", "names")

    def __init__(self, size: int) -> None:
        self.seen: deque[tuple[float, str]] = deque(maxlen=size)
        self.names: dict[str, int] = {}

    def add(self, ts: float, name: str, window: float) -> None:
        if len(self.seen) == self.seen.maxlen:
            self._drop()
        self.seen.append((ts, name))
        self.names[name] = self.names.get(name, 0) + 1
        while self.seen and self.seen[0][0] < ts - window:
            self._drop()

    def _drop(self) -> None:
        _, name = self.seen.popleft()
        left = self.names[name] - 1
        if left:
            self.names[name] = left
        else:
            del self.names[name]


def registered_domain(name: str) -> str:
    """The domain a name is registered under: its last two labels, or three when the second
    level is a country's registry label (:data:`SECOND_LEVEL`).

    >>> registered_domain("a.b.example.com"), registered_domain("x.bbc.co.uk")
    ('example.com', 'bbc.co.uk')
    >>> registered_domain("co.uk"), registered_domain("localhost")
    ('co.uk', 'localhost')
    """
    labels = name.split(".")
    if len(labels) >= 3 and len(labels[-1]) == 2 and labels[-2] in SECOND_LEVEL:
        return ".".join(labels[-3:])
    return ".".join(labels[-2:])


def ignored(name: str) -> bool:
    """Reverse lookups, mDNS and DNS-SD names: many distinct names are their nature.

    >>> ignored("4.3.2.1.in-addr.arpa"), ignored("printer.local"), ignored("_ipp._tcp.lan")
    (True, True, True)
    """
    if not name or any(name == s or name.endswith("." + s) for s in IGNORED_SUFFIXES):
        return True
    return any(label in SERVICE_LABELS for label in name.split("."))


def entropy(text: str) -> float:
    """Shannon entropy of ``text``'s characters, in bits per character.

    >>> entropy("aaaa"), entropy("abcd"), entropy("")
    (0.0, 2.0, 0.0)
    """
    if not text:
        return 0.0
    n = len(text)
    return -sum(k / n * math.log2(k / n) for k in Counter(text).values()) + 0.0


def encoded(length: float, bits: float) -> bool:
    """Whether subdomain parts of this mean length and entropy look like encoded data: at
    least 40 characters (long), or at least 20 characters at 3.7 bits/character or more (a
    random 20-character label of letters and digits has about 3.8; host names such as
    ``ec2-52-95-110-1.compute-1`` about 3.5).

    >>> encoded(25, 3.54), encoded(20, 3.83), encoded(52, 3.0)
    (False, True, True)
    """
    return length >= 40 or (length >= 20 and bits >= 3.7)


def _short(label: str, limit: int = 24) -> str:
    return label if len(label) <= limit else label[: limit - 3] + "..."


def _fresh(exact_up_to: int) -> _Tally:
    return _Tally(-math.inf, -math.inf, "", Distinct(exact_up_to), Distinct(exact_up_to=8))
