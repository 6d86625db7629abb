"""How far a long job over capture files is: share done, rate and time left.

Work is measured in what is known up front: bytes of the files' sizes (a capture's packet count
is only known once it is read), or steps of a known total (training epochs). The rate is shown
in what a person counts (packets, epochs). Bytes done are estimated from the packets done, each
its captured bytes plus its format's record overhead (:data:`RECORD_OVERHEAD`), so a caller that
only sees the packets it finished (``score``'s ordered worker results) reports exactly those.

Pure: no clock and no I/O; callers pass the time. The terminal bar (``netids.commands``) and the
dashboard read the same :class:`Snapshot`. tqdm would draw the bar, but not estimate bytes from
packets or feed the web page, so this small module does both jobs the same way.

>>> meter = Meter(total=1_000_000, started=100.0)
>>> meter.advance(packets=4096, work=250_000)
>>> s = meter.snapshot(now=101.0)
>>> s.fraction, s.rate, s.seconds_left
(0.25, 4096.0, 3.0)
>>> s.describe()
'4,096 packets · 25% · 4,096 packets/s · 3 s left'
"""

from __future__ import annotations

from dataclasses import dataclass

# bytes a format spends per packet beside its captured bytes: a pcap record header, a pcapng
# enhanced packet block's header and trailer (its padding and options are not counted)
RECORD_OVERHEAD = {"pcap": 16, "pcapng": 32}
MIN_SECONDS = 0.5  # no time left is guessed before the job ran this long
NEARLY_DONE = 0.999  # an estimate never claims the end: only finish() does


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A job's progress at one moment."""

    count: int  # packets (or ``unit``) done
    work: float  # work units done (bytes, epochs)
    total: float | None  # work units in all; None when unknown
    elapsed: float  # seconds since the start
    finished: bool = False
    unit: str = "packets"
    bound: bool = False  # the time left is an upper bound (training may stop early)

    @property
    def fraction(self) -> float | None:
        """Share done, 0..1; None when the total is unknown."""
        if self.finished:
            return 1.0
        if not self.total:
            return None
        return min(max(self.work / self.total, 0.0), NEARLY_DONE)

    @property
    def rate(self) -> float:
        """``unit`` per second, over the whole job so far."""
        return self.count / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def seconds_left(self) -> float | None:
        """Time left at the average pace so far; None when it cannot be told yet."""
        if self.finished:
            return 0.0
        fraction = self.fraction
        if fraction is None or fraction <= 0 or self.elapsed < MIN_SECONDS:
            return None
        return self.elapsed * (1.0 - fraction) / fraction

    def describe(self) -> str:
        """One line for people: count, share, rate, time left.

        >>> Snapshot(3, 3, 20, 42.0, unit="epochs", bound=True).describe()
        '3/20 epochs · 15% · 14.0 s an epoch · at most 3 min 58 s left'
        >>> Snapshot(10, 10, None, 0.1).describe()
        '10 packets · 100 packets/s'
        """
        counted = f"/{self.total:,.0f}" if self.unit != "packets" and self.total else ""
        parts = [f"{self.count:,}{counted} {self.unit}"]
        fraction = self.fraction
        if fraction is not None:
            parts.append(f"{int(fraction * 100)}%")
        if self.count:
            parts.append(format_rate(self.rate, self.unit))
        left = self.seconds_left
        if left is not None and not self.finished:
            parts.append(("at most " if self.bound else "") + f"{format_duration(left)} left")
        return " · ".join(parts)

    def bar(self, width: int) -> str:
        """``[#####     ]`` of ``width`` characters for the share done (dots when unknown).

        >>> Snapshot(1, 50, 100, 1.0).bar(12)
        '[#####     ]'
        """
        inner = max(width - 2, 1)
        fraction = self.fraction
        if fraction is None:
            return "[" + "." * inner + "]"
        filled = int(fraction * inner)
        return "[" + "#" * filled + " " * (inner - filled) + "]"


class Meter:
    """Adds up a job's progress as its parts finish; :meth:`snapshot` reads it."""

    def __init__(self, total: float | None, started: float, *, unit: str = "packets",
                 bound: bool = False) -> None:
        self.total = total
        self.started = started
        self.unit = unit
        self.bound = bound
        self.count = 0
        self.work = 0.0
        self.finished = False

    def advance(self, *, packets: int, work: float) -> None:
        """``packets`` more done, worth ``work`` units."""
        self.count += packets
        self.work += work

    def finish(self) -> None:
        self.finished = True

    def snapshot(self, now: float) -> Snapshot:
        return Snapshot(self.count, self.work, self.total, max(now - self.started, 0.0),
                        self.finished, self.unit, self.bound)


def packet_bytes(packets: int, captured: int, overhead: int) -> int:
    """Bytes of a capture file that ``packets`` packets of ``captured`` bytes in all take.

    >>> packet_bytes(2, 120, RECORD_OVERHEAD["pcap"])
    152
    """
    return captured + packets * overhead


def format_rate(rate: float, unit: str) -> str:
    """``12,345 packets/s``, or ``14.0 s an epoch`` when fewer than one a second.

    >>> format_rate(12345.4, "packets"), format_rate(0.25, "epochs")
    ('12,345 packets/s', '4.0 s an epoch')
    """
    if rate >= 1 or rate <= 0:
        return f"{rate:,.0f} {unit}/s"
    return f"{1 / rate:.1f} s a{'n' if unit[0] in 'aeiou' else ''} {unit.rstrip('s')}"


def format_duration(seconds: float) -> str:
    """Seconds as people say them: ``7 s``, ``2 min 05 s``, ``1 h 03 min``.

    >>> format_duration(7.4), format_duration(125), format_duration(3790)
    ('7 s', '2 min 05 s', '1 h 03 min')
    """
    s = int(round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"
