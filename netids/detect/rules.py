"""Allow-list rules ("mark as expected"): which events a person has said are normal here.

A :class:`Rule` names a source (address or CIDR), a destination (address or CIDR), a
destination port and a kind, each of which may be "any", and optionally when it expires. A
:class:`RuleSet` compiles rules once (networks parsed up front) and tells, for an event, the
first rule that covers it. Events a rule covers are not stored, shown or sent to the EVE file;
the rule counts them instead (``netids.store.rules``), so what was suppressed stays visible as
counts on the Rules page. Pure: no clock, no database.
"""

from __future__ import annotations

import functools
import ipaddress
from dataclasses import dataclass, field

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class RuleError(ValueError):
    """A rule field that does not parse; the message is one line for a person."""


@dataclass(frozen=True, slots=True)
class Rule:
    """One allow-list rule; "" (or ``None``) in a field means any."""

    src: str = ""  # source address or CIDR
    dst: str = ""  # destination address or CIDR
    dst_port: int | None = None
    kind: str = ""  # event kind, as events name it ("port scan", "unusual size", ...)
    expires: float | None = None  # seconds since the epoch (wall clock); None: never
    note: str = ""
    created_at: float = 0.0  # seconds since the epoch
    created_by: str = ""
    id: int | None = None  # the database row's id, once stored

    def __post_init__(self) -> None:
        for name in ("src", "dst"):
            parse_network(getattr(self, name), name)
        if self.dst_port is not None and not 0 <= self.dst_port <= 65535:
            raise RuleError(f"port {self.dst_port} is not between 0 and 65535")

    @property
    def summary(self) -> str:
        """The rule in words.

        >>> Rule(src="10.0.0.0/8", dst_port=53, kind="port scan").summary
        'port scan from 10.0.0.0/8 to any host port 53'
        """
        port = "" if self.dst_port is None else f" port {self.dst_port}"
        return (f"{self.kind or 'any kind'} from {self.src or 'any host'} "
                f"to {self.dst or 'any host'}{port}")


@dataclass(frozen=True, slots=True)
class _Compiled:
    rule: Rule
    src: Network | None
    dst: Network | None
    kind: str  # lower case


@dataclass(frozen=True, slots=True)
class RuleSet:
    """Rules compiled for matching; immutable, so the pipeline thread may read one while the
    UI thread builds the next.

    >>> rules = RuleSet.of([Rule(src="10.77.0.0/24", kind="port scan")])
    >>> rules.match("10.77.0.66", "10.77.0.1", 22, "port scan", now=0.0).kind
    'port scan'
    >>> rules.match("10.78.0.66", "10.77.0.1", 22, "port scan", now=0.0) is None
    True
    """

    compiled: tuple[_Compiled, ...] = field(default=())

    @classmethod
    def of(cls, rules: list[Rule]) -> RuleSet:
        return cls(tuple(_Compiled(r, parse_network(r.src, "src"), parse_network(r.dst, "dst"),
                                   r.kind.strip().lower()) for r in rules))

    def __len__(self) -> int:
        return len(self.compiled)

    def match(self, src: str, dst: str, dst_port: int | None, kind: str,
              *, now: float) -> Rule | None:
        """The first unexpired rule covering an event with these fields, else None. A rule
        naming an address never covers an event whose sources (or targets) merged (``""``)."""
        if not self.compiled:
            return None
        src_ip, dst_ip, kind = _address(src), _address(dst), kind.lower()
        for c in self.compiled:
            r = c.rule
            if r.expires is not None and r.expires <= now:
                continue
            if c.kind and c.kind != kind:
                continue
            if r.dst_port is not None and r.dst_port != dst_port:
                continue
            if c.src is not None and (src_ip is None or not _within(src_ip, c.src)):
                continue
            if c.dst is not None and (dst_ip is None or not _within(dst_ip, c.dst)):
                continue
            return r
        return None


def parse_network(text: str, name: str = "address") -> Network | None:
    """An address or CIDR as a network (a host is a /32 or /128); "" or "any" is None.

    >>> parse_network("10.1.2.3/24")
    IPv4Network('10.1.2.0/24')
    >>> parse_network("any") is None
    True
    """
    text = text.strip()
    if text in ("", "any", "*"):
        return None
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise RuleError(f"{name} {text[:64]!r} is not an address or CIDR") from None


@functools.lru_cache(maxsize=65536)
def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _within(addr: ipaddress.IPv4Address | ipaddress.IPv6Address, net: Network) -> bool:
    if addr.version != net.version:
        return False
    return addr in net
