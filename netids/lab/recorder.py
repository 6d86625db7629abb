"""A lab session recorded: clients and attacks run while the bridge is captured and labelled.

:func:`run_lab` builds the lab network, starts the servers, lets the clients run and the
attacker host run its attacks at scheduled times, while :class:`LiveSource` captures on the
bridge (promiscuous, so every frame crossing the switch is seen once). Each packet is labelled
by the attacker's addresses and the time span of the attack that was running, and written to
NAME.pcap and NAME.labels.csv.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import logging
import random
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from netids.capture.live import LiveSource
from netids.capture.pcapfile import PcapWriter
from netids.config import CaptureSettings
from netids.detect.frames import LINKTYPE_ETHERNET, FrameBatch
from netids.lab.attacks import Attack
from netids.lab.life import Life, plan_life
from netids.lab.network import BRIDGE, Host, LabError, LabNetwork, remove_stale_namespaces
from netids.lab.scenario import (
    ATTACKER,
    CLIENTS,
    HOSTS,
    remove_resolv_confs,
    run_background,
    run_client,
    start_servers,
)

log = logging.getLogger(__name__)

ATTACK_GAP = 2.5  # benign-only seconds between attacks


@dataclass(slots=True)
class Span:
    attack: Attack
    start: float  # when the attack started; what the attacker sends after it is its doing


@dataclass(slots=True)
class LabReport:
    pcap: Path
    labels: Path
    packets: int = 0
    attack_packets: int = 0
    by_kind: dict[str, int] = field(default_factory=dict)
    spans: list[Span] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    kernel_drops: int = 0
    queue_drops: int = 0
    life: Life = field(default_factory=Life)
    started: float = 0.0  # wall-clock time the clients started; the life plan counts from it


def run_lab(
    out_dir: str | Path,
    name: str,
    duration: float,
    attacks: Sequence[Attack],
    *,
    seed: int = 0,
    settings: CaptureSettings | None = None,
    varied: bool = False,
) -> LabReport:
    """Run one lab session of ``duration`` seconds; write NAME.pcap and NAME.labels.csv.

    ``varied``: clients join, leave and pause, load and a background job vary by ``seed``
    (:mod:`netids.lab.life`); otherwise every client runs from start to end."""
    if not 3 <= duration <= 3600:
        raise LabError("lab duration must be between 3 and 3600 seconds")
    for tool in ("nmap", "hping3", "arpspoof", "dnsmasq", "iperf3", "curl", "wget", "dig", "ping"):
        if shutil.which(tool) is None:
            raise LabError(
                f"the lab needs {tool!r} installed (apt install nmap hping3 dsniff "
                "dnsmasq iperf3 curl wget dnsutils iputils-ping ethtool)"
            )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    report = LabReport(out / f"{name}.pcap", out / f"{name}.labels.csv",
                       life=plan_life(seed, duration, CLIENTS, varied=varied))
    settings = settings or CaptureSettings()
    remove_stale_namespaces()
    previous = None  # `kill` tears the lab down like Ctrl-C does
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _interrupt)
    with tempfile.TemporaryDirectory(prefix="netids-lab-") as tmp, LabNetwork(HOSTS) as net:
        try:
            start_servers(net, Path(tmp))
            asyncio.run(
                _session(net, report, duration, list(attacks), random.Random(seed), settings)
            )
        finally:
            remove_resolv_confs(net)
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)
    return report


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


async def _session(
    net: LabNetwork,
    report: LabReport,
    duration: float,
    attacks: list[Attack],
    rng: random.Random,
    settings: CaptureSettings,
) -> None:
    source = LiveSource(BRIDGE, None, settings, netns=net.switch)
    source.start()
    labeller = _Labeller(net.hosts[ATTACKER], report.spans)
    writer = asyncio.create_task(_write(source, report, labeller))
    t0 = report.started = time.time()
    life = report.life.clients
    tasks = [
        asyncio.create_task(run_client(net, c, rng.randrange(2**32), t0 + duration, life[c]))
        for c in CLIENTS
    ]
    if report.life.background is not None:
        job = run_background(net, report.life.background, rng.randrange(2**32), t0 + duration)
        tasks.append(asyncio.create_task(job))
    tasks.append(asyncio.create_task(_attacks(net, attacks, report, t0, duration)))
    try:
        await asyncio.wait(tasks, timeout=duration + 30)
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.sleep(0.5)  # let the last frames reach the ring
        source.stop()
        await asyncio.wait_for(writer, 30)
    stats = source.stats()
    report.kernel_drops, report.queue_drops = stats.kernel_drops, stats.queue_drops
    for t in tasks:  # surface a generator's failure
        if not t.cancelled() and t.exception() is not None:
            raise t.exception()  # type: ignore[misc]


async def _attacks(
    net: LabNetwork, attacks: list[Attack], report: LabReport, t0: float, duration: float
) -> None:
    """Run the attacks one after the other, spread over the session after a quiet start."""
    start = t0 + max(3.0, 0.2 * duration)
    slot = (t0 + duration - 1 - start) / max(1, len(attacks))  # each attack's share of time
    ips = {h.name: h.ip for h in net.hosts.values()}
    for i, attack in enumerate(attacks):
        await asyncio.sleep(max(0.0, start + i * slot - time.time()))
        now = time.time()
        remaining = t0 + duration - 1 - now
        if remaining < min(attack.budget, 3.0):  # an attack may be cut short, not to nothing
            report.skipped.append(attack.name)
            log.warning("no time left for attack %s; skipped", attack.name)
            continue
        argv = [a.format(**ips) for a in attack.argv]
        budget = min(attack.budget, remaining)
        report.spans.append(Span(attack, now))  # the labeller sees it while it runs
        log.info("attack %s: %s", attack.name, " ".join(argv))
        with contextlib.suppress(TimeoutError):
            await net.exec(ATTACKER, *argv, timeout=budget)
        await asyncio.sleep(ATTACK_GAP)


class _Labeller:
    """Label frames by the attacker's MAC/IP and the time spans of the attacks.

    A frame to or from the attacker belongs to the attack that started last before it: the
    attacker does nothing else, and what follows an attack (late replies, retransmissions,
    a victim still using a poisoned ARP entry) is still its doing. The attacker's IPv6
    housekeeping (neighbour and router solicitations, no attack uses IPv6) stays benign.
    """

    def __init__(self, attacker: Host, spans: list[Span]) -> None:
        self.mac = bytes.fromhex(attacker.mac.replace(":", ""))
        self.ip = bytes(int(x) for x in attacker.ip.split("."))
        self.spans = spans

    def kind(self, frame: bytes, ts: float) -> str:
        """attack_kind of a frame, or "" for benign."""
        if not self._involved(frame):
            return ""
        for span in reversed(self.spans):
            if span.start - 0.2 <= ts:
                return span.attack.kind
        return ""

    def _involved(self, f: bytes) -> bool:
        etype = f[12:14]
        if etype == b"\x86\xdd":
            return False
        if f[0:6] == self.mac or f[6:12] == self.mac:
            return True
        if etype == b"\x08\x00":
            return f[26:30] == self.ip or f[30:34] == self.ip
        if etype == b"\x08\x06":
            return f[22:28] == self.mac or f[28:32] == self.ip or f[38:42] == self.ip
        return False


async def _write(source: LiveSource, report: LabReport, labeller: _Labeller) -> None:
    with report.pcap.open("wb") as fh, report.labels.open("w", newline="") as lab:
        rows = csv.writer(lab)
        rows.writerow(["index", "timestamp", "label", "attack_kind"])
        pcap = PcapWriter(fh, LINKTYPE_ETHERNET, source.settings.snaplen)
        async for batch in source.batches():
            _write_batch(pcap, rows, batch, report, labeller)


def _write_batch(
    pcap: PcapWriter,
    rows: Any,  # a csv.writer
    batch: FrameBatch,
    report: LabReport,
    labeller: _Labeller,
) -> None:
    buf = batch.buf
    for s, cap, wire, ts in zip(
        batch.start.tolist(),
        batch.caplen.tolist(),
        batch.wirelen.tolist(),
        batch.ts.tolist(),
        strict=True,
    ):
        frame = buf[s : s + cap].tobytes()
        pcap.write(ts, frame, wire)
        kind = labeller.kind(frame, ts)
        rows.writerow([report.packets, f"{ts:.6f}", 1 if kind else 0, kind])
        report.packets += 1
        if kind:
            report.attack_packets += 1
            report.by_kind[kind] = report.by_kind.get(kind, 0) + 1
