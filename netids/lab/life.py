"""How the lab's hosts come and go in a varied run: joins, leaves, pauses, load, background.

A real network drifts between the day a model learns it and the day it watches it: hosts
pause, join late and leave early, load rises and falls, a background job appears or runs at
another period. A varied run draws all of that from its seed, so two runs of the lab differ
as two days of one network do (the drift bench's another-run case). A steady run keeps every
client busy from the first second to the last, at one load, with no background job.

>>> life = plan_life(7, 300.0, ("c1", "c2", "c3", "c4"), varied=True)
>>> life == plan_life(7, 300.0, ("c1", "c2", "c3", "c4"), varied=True)
True
>>> lives = life.clients.values()
>>> sum(c.join > 0 for c in lives), sum(c.leave < 300 for c in lives)
(1, 1)
>>> plan_life(7, 300.0, ("c1",), varied=False).clients["c1"].wait(299.0)
0.0
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field

PHASE = 60.0  # seconds of one load level; a client's load is drawn again every phase
LOADS = (0.35, 2.8)  # least and most load, as multiples of a steady client's action rate
BACKGROUND_PERIODS = (5.0, 10.0, 30.0)  # seconds between a background job's polls


@dataclass(frozen=True, slots=True)
class ClientLife:
    """When one client is on the network and how busy it is, in seconds after the start."""

    join: float = 0.0
    leave: float = float("inf")
    pauses: tuple[tuple[float, float], ...] = ()  # silent spells (start, end)
    loads: tuple[float, ...] = (1.0,)  # action-rate multiplier of each PHASE in turn

    def wait(self, t: float) -> float | None:
        """Seconds from ``t`` until the client may act (0 when it may now), None once it left.

        >>> ClientLife(join=10.0, leave=50.0, pauses=((20.0, 30.0),)).wait(25.0)
        5.0
        >>> ClientLife(join=10.0, leave=50.0).wait(50.0) is None
        True
        """
        if t >= self.leave:
            return None
        if t < self.join:
            return self.join - t
        for start, end in self.pauses:
            if start <= t < end:
                return end - t
        return 0.0

    def active_for(self, t: float) -> float:
        """Seconds from ``t`` until the client next falls silent (pause or leave), so what it
        runs can be stopped then, as a host that sleeps or leaves stops its sessions."""
        ends = [self.leave] + [start for start, _ in self.pauses if start > t]
        return min(ends) - t

    def load(self, t: float) -> float:
        """The client's action-rate multiplier at ``t``."""
        return self.loads[int(max(t, 0.0) // PHASE) % len(self.loads)]


@dataclass(frozen=True, slots=True)
class Background:
    """A periodic job one lab host runs against another: a health check or a ping sweep."""

    host: str
    kind: str  # "health": an HTTP HEAD to target; "ping": one echo to each of the targets
    targets: tuple[str, ...]
    period: float  # seconds between two runs, jittered by a tenth

    def describe(self) -> str:
        what = "HTTP health checks of" if self.kind == "health" else "pings"
        return f"{self.host} {what} {', '.join(self.targets)} every {self.period:.0f} s"


@dataclass(frozen=True, slots=True)
class Life:
    """The plan of one lab run: each client's life and the background job, if any."""

    clients: dict[str, ClientLife] = field(default_factory=dict)
    background: Background | None = None

    def describe(self) -> str:
        """One line for the lab's output: who joins, leaves and pauses, and the background."""
        parts = []
        for name, c in self.clients.items():
            if c.join > 0:
                parts.append(f"{name} joins at {c.join:.0f} s")
            if c.leave != float("inf"):
                parts.append(f"{name} leaves at {c.leave:.0f} s")
            parts += [f"{name} pauses {a:.0f}-{b:.0f} s" for a, b in c.pauses]
            if len(c.loads) > 1:
                parts.append(f"{name} load {min(c.loads):.1f}-{max(c.loads):.1f}x")
        if self.background is not None:
            parts.append(self.background.describe())
        return "; ".join(parts) or "steady: every client from start to end"


def plan_life(seed: int, duration: float, clients: Sequence[str], *, varied: bool) -> Life:
    """The plan of a run of ``duration`` seconds; steady unless ``varied``.

    Varied: one client joins between 15 and 40 % of the run, another leaves between 60 and
    85 %, every client pauses 0 to 2 times for 5 to 20 % of the run, each client's load is
    drawn per minute between LOADS, and a background job is drawn (health checks of the web
    server or a ping sweep of the servers) with its host and period.
    """
    if not varied:
        return Life({c: ClientLife() for c in clients})
    rng = random.Random(f"life-{seed}")
    names = list(clients)
    joiner, leaver = rng.sample(names, 2) if len(names) > 1 else (names[0], None)
    lives = {}
    for name in names:
        join = rng.uniform(0.15, 0.4) * duration if name == joiner else 0.0
        leave = rng.uniform(0.6, 0.85) * duration if name == leaver else float("inf")
        pauses = []
        for _ in range(rng.randint(0, 2)):
            length = rng.uniform(0.05, 0.2) * duration
            start = rng.uniform(join, min(leave, duration) - length)
            pauses.append((start, start + length))
        phases = max(1, int(duration // PHASE) + 1)
        loads = tuple(LOADS[0] * (LOADS[1] / LOADS[0]) ** rng.random() for _ in range(phases))
        lives[name] = ClientLife(join, leave, _merged(pauses), loads)
    return Life(lives, _background(rng))


def _merged(spells: list[tuple[float, float]]) -> tuple[tuple[float, float], ...]:
    """Overlapping spells as one."""
    out: list[tuple[float, float]] = []
    for start, end in sorted(spells):
        if out and start <= out[-1][1]:
            out[-1] = (out[-1][0], max(end, out[-1][1]))
        else:
            out.append((start, end))
    return tuple(out)


def _background(rng: random.Random) -> Background:
    period = rng.choice(BACKGROUND_PERIODS)
    if rng.random() < 0.5:
        return Background(rng.choice(("web2", "dns")), "health", ("srv",), period)
    host = rng.choice(("srv", "web2"))
    return Background(host, "ping", tuple(t for t in ("srv", "web2", "dns") if t != host), period)
