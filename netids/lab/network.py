"""The traffic lab: real programs talking between network namespaces, captured and labelled.

A switch namespace holds a bridge; every host is a namespace joined to it by a veth pair, with
an address in 10.77.0.0/24 and offloads off (so frames are wire-sized, never 64 KiB GSO
super-frames). Servers (python http.server, dnsmasq, iperf3) answer clients that fetch
files of varied sizes with curl and wget, look names up with dig, ping and send short
iperf3 bursts; an attacker host runs nmap, hping3 and arpspoof against them at scheduled
times. :class:`LiveSource` captures on the bridge (promiscuous, so every frame crossing the
switch is seen once) and each packet is labelled by the attacker's addresses and the time
span of the attack that was running.

Traffic goes only to addresses of namespaces the lab made; everything is torn down on exit,
also after an error or Ctrl-C.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import logging
import os
import random
import re
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

from netids.capture.live import LiveSource
from netids.config import CaptureSettings
from netids.detect.frames import LINKTYPE_ETHERNET, FrameBatch

log = logging.getLogger(__name__)
T = TypeVar("T")

PREFIX = "netids-lab-"  # every namespace the lab makes starts with this, then the owner's pid
SUBNET = "10.77.0"
BRIDGE = "br0"
TOOLS = ("ip", "ethtool")


class LabError(Exception):
    """The lab cannot run; the message is meant for the user as it is."""


@dataclass(frozen=True, slots=True)
class Host:
    name: str
    ns: str  # network namespace name
    ip: str
    mac: str


# --------------------------------------------------------------------------- the network


class LabNetwork:
    """Namespaces on one bridge; a context manager that always tears everything down.

    >>> # with LabNetwork({"a": 21, "b": 22}) as net: net.run("a", "ping", "-c1", net.ip("b"))
    """

    def __init__(self, hosts: dict[str, int], *, tag: str | None = None) -> None:
        for name, octet in hosts.items():
            if not re.fullmatch(r"[a-z][a-z0-9]{0,11}", name) or not 1 <= octet <= 254:
                raise LabError(f"bad lab host {name!r} .{octet}")
        self.tag = tag or f"{os.getpid()}-{random.randrange(16**4):04x}"
        self.prefix = f"{PREFIX}{self.tag}-"
        self.switch = f"{self.prefix}sw"
        self.hosts = {
            name: Host(
                name, f"{self.prefix}{name}", f"{SUBNET}.{octet}", f"02:77:00:00:00:{octet:02x}"
            )
            for name, octet in hosts.items()
        }
        self._procs: list[subprocess.Popen[bytes]] = []

    # -- life cycle

    def __enter__(self) -> LabNetwork:
        try:
            self.create()
        except BaseException:
            self.destroy()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.destroy()

    def create(self) -> None:
        if os.geteuid() != 0:
            raise LabError("the lab needs root (network namespaces and veth pairs)")
        for tool in TOOLS:
            if shutil.which(tool) is None:
                raise LabError(f"the lab needs {tool!r} installed")
        sw = self.switch
        _ip("netns", "add", sw)
        _ns(sw, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1")
        _ns(sw, "sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1")
        _ip("-n", sw, "link", "set", "lo", "up")
        _ip(
            "-n",
            sw,
            "link",
            "add",
            BRIDGE,
            "type",
            "bridge",
            "stp_state",
            "0",
            "forward_delay",
            "0",
        )
        _ip("-n", sw, "link", "set", BRIDGE, "up")
        for i, host in enumerate(self.hosts.values()):
            port = f"p{i}-{host.name}"[:15]
            _ip("netns", "add", host.ns)
            _ip("-n", host.ns, "link", "set", "lo", "up")
            _ip(
                "-n",
                sw,
                "link",
                "add",
                port,
                "type",
                "veth",
                "peer",
                "name",
                "eth0",
                "netns",
                host.ns,
            )
            _ip("-n", host.ns, "link", "set", "eth0", "address", host.mac)
            _ip("-n", host.ns, "addr", "add", f"{host.ip}/24", "dev", "eth0")
            _ip("-n", sw, "link", "set", port, "master", BRIDGE)
            _offloads_off(sw, port)
            _offloads_off(host.ns, "eth0")
            _ip("-n", sw, "link", "set", port, "up")
            _ip("-n", host.ns, "link", "set", "eth0", "up")
        _offloads_off(sw, BRIDGE)

    def destroy(self) -> None:
        """Stop every process the lab started and delete its namespaces; idempotent."""
        for proc in self._procs:
            _kill(proc)
        self._procs.clear()
        remove_namespaces(self.prefix)

    # -- running programs inside hosts

    def ip(self, host: str) -> str:
        return self.hosts[host].ip

    def run(self, host: str, *cmd: str, timeout: float = 30, check: bool = True) -> str:
        """Run a command in ``host``'s namespace to completion; return its stdout."""
        done = subprocess.run(
            ["ip", "netns", "exec", self.hosts[host].ns, *cmd],
            capture_output=True,
            timeout=timeout,
            check=False,
        )
        if check and done.returncode != 0:
            raise LabError(
                f"{host}: {' '.join(cmd)} failed: {done.stderr.decode(errors='replace').strip()}"
            )
        return done.stdout.decode(errors="replace")

    def popen(self, host: str, *cmd: str, **kw: object) -> subprocess.Popen[bytes]:
        """Start a long-running program in ``host``; it is killed at teardown."""
        kw.setdefault("stdout", subprocess.DEVNULL)
        kw.setdefault("stderr", subprocess.DEVNULL)
        proc = subprocess.Popen(  # noqa: S603 - fixed tool names, our own arguments
            ["ip", "netns", "exec", self.hosts[host].ns, *cmd],
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            **kw,  # type: ignore[call-overload]
        )
        self._procs.append(proc)
        return proc

    async def exec(self, host: str, *cmd: str, timeout: float) -> int:
        """Run a command in ``host`` from async code, killed after ``timeout`` seconds."""
        proc = await asyncio.create_subprocess_exec(
            "ip",
            "netns",
            "exec",
            self.hosts[host].ns,
            *cmd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            return await asyncio.wait_for(proc.wait(), timeout)
        except (TimeoutError, asyncio.CancelledError):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(proc.wait(), 2)
            raise


def lab_namespaces(prefix: str = PREFIX) -> list[str]:
    """Names of existing network namespaces starting with ``prefix``."""
    out = subprocess.run(
        ["ip", "netns", "list"], capture_output=True, text=True, check=False
    ).stdout
    return [line.split()[0] for line in out.splitlines() if line.startswith(prefix)]


def remove_namespaces(prefix: str) -> None:
    """Kill the processes in, and delete, every namespace starting with ``prefix``."""
    for ns in lab_namespaces(prefix):
        pids = subprocess.run(
            ["ip", "netns", "pids", ns], capture_output=True, text=True, check=False
        )
        for pid in pids.stdout.split():
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid), signal.SIGKILL)
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)
        shutil.rmtree(Path("/etc/netns") / ns, ignore_errors=True)


def remove_stale_namespaces() -> None:
    """Delete lab namespaces left by lab runs whose process is gone (a kill -9, a crash)."""
    for ns in lab_namespaces():
        owner = ns[len(PREFIX) :].split("-", 1)[0]
        if owner.isdigit() and not Path(f"/proc/{owner}").exists():
            remove_namespaces(ns)
    with contextlib.suppress(OSError):
        Path("/etc/netns").rmdir()  # only if empty


def _ip(*args: str) -> None:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise LabError(f"ip {' '.join(args)}: {done.stderr.strip()}")


def _ns(ns: str, *cmd: str) -> None:
    subprocess.run(["ip", "netns", "exec", ns, *cmd], capture_output=True, check=False)


def _offloads_off(ns: str, dev: str) -> None:
    done = subprocess.run(
        [
            "ip",
            "netns",
            "exec",
            ns,
            "ethtool",
            "-K",
            dev,
            "tso",
            "off",
            "gso",
            "off",
            "gro",
            "off",
            "tx",
            "off",
            "rx",
            "off",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode not in (0, 80):  # 80: some feature could not be changed
        raise LabError(f"ethtool -K {dev}: {done.stderr.strip()}")


def _kill(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5)


# --------------------------------------------------------------------------- the session

HOSTS = {"srv": 10, "web2": 11, "dns": 53, "c1": 21, "c2": 22, "c3": 23, "c4": 24, "atk": 66}
CLIENTS = ("c1", "c2", "c3", "c4")
ATTACKER = "atk"
DOMAIN = "lab.test"
NAMES = ("www", "files", "cdn", "api", "mail", "intranet", "nosuch", "missing")
FILE_SIZES = (300, 1200, 4000, 9000, 20000, 48000, 120000, 350000, 1000000)
FILE_WEIGHTS = (12, 14, 14, 12, 10, 8, 5, 3, 1)
ATTACK_GAP = 2.5  # benign-only seconds between attacks


@dataclass(frozen=True, slots=True)
class Attack:
    name: str
    kind: str  # attack_kind in the labels (the vocabulary of ../shared/data)
    budget: float  # seconds it may run at most
    argv: tuple[str, ...]  # run in the attacker host; "{name}" placeholders are host IPs


ATTACKS: dict[str, Attack] = {
    a.name: a
    for a in (
        Attack(
            "syn_scan",
            "port_scan",
            8,
            (
                "nmap",
                "-sS",
                "-Pn",
                "-n",
                "-T4",
                "--max-retries",
                "1",
                "--max-rate",
                "3000",
                "-p",
                "1-1000",
                "{srv}",
            ),
        ),
        Attack(
            "connect_scan",
            "port_scan",
            8,
            ("nmap", "-sT", "-Pn", "-n", "-T4", "--max-retries", "1", "-p", "1-600", "{web2}"),
        ),
        Attack(
            "udp_scan",
            "port_scan",
            10,
            (
                "nmap",
                "-sU",
                "-Pn",
                "-n",
                "-T4",
                "--max-retries",
                "1",
                "--host-timeout",
                "9s",
                "-p",
                "40-80,110-140,160-170",
                "{dns}",
            ),
        ),
        Attack(
            "os_scan",
            "os_fingerprint",
            9,
            (
                "nmap",
                "-O",
                "-Pn",
                "-n",
                "--max-retries",
                "1",
                "--host-timeout",
                "8s",
                "-p",
                "22,80",
                "{srv}",
            ),
        ),
        Attack(
            "host_sweep",
            "host_sweep",
            6,
            (
                "nmap",
                "-sn",
                "-n",
                "--send-ip",
                "-PE",
                "-PS80,443",
                "-PA80",
                "{srv}",
                "{web2}",
                "{dns}",
                "{c1}",
                "{c2}",
                "{c3}",
                "{c4}",
            ),
        ),
        Attack(
            "syn_flood",
            "syn_flood",
            5,
            ("hping3", "-q", "-S", "-p", "80", "-i", "u400", "-c", "7500", "{srv}"),
        ),
        Attack(
            "udp_flood",
            "udp_flood",
            5,
            (
                "hping3",
                "-q",
                "--udp",
                "-p",
                "9999",
                "-d",
                "120",
                "-i",
                "u400",
                "-c",
                "7500",
                "{dns}",
            ),
        ),
        Attack(
            "icmp_flood",
            "icmp_flood",
            5,
            ("hping3", "-q", "--icmp", "-d", "56", "-i", "u400", "-c", "7500", "{web2}"),
        ),
        Attack(
            "arp_spoof",
            "arp_spoof_mitm",
            10,
            (
                "timeout",
                "-s",
                "INT",
                "-k",
                "3",
                "6",
                "arpspoof",
                "-i",
                "eth0",
                "-t",
                "{c1}",
                "{srv}",
            ),
        ),
    )
}


@dataclass(slots=True)
class Span:
    attack: Attack
    start: float
    end: float


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
    max_frame: int = 0


def parse_attacks(spec: str) -> list[Attack]:
    """``none``, ``all`` or a comma-separated list of attack names."""
    spec = spec.strip().lower()
    if spec in ("", "none"):
        return []
    if spec == "all":
        return list(ATTACKS.values())
    names = [s.strip() for s in spec.split(",") if s.strip()]
    unknown = [n for n in names if n not in ATTACKS]
    if unknown:
        raise LabError(f"unknown attack(s) {', '.join(unknown)}; known: {', '.join(ATTACKS)}")
    return [ATTACKS[n] for n in names]


def run_lab(
    out_dir: str | Path,
    name: str,
    duration: float,
    attacks: Sequence[Attack],
    *,
    seed: int = 0,
    settings: CaptureSettings | None = None,
) -> LabReport:
    """Run one lab session of ``duration`` seconds; write NAME.pcap and NAME.labels.csv."""
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
    report = LabReport(out / f"{name}.pcap", out / f"{name}.labels.csv")
    settings = settings or CaptureSettings()
    remove_stale_namespaces()
    previous = None  # `kill` tears the lab down like Ctrl-C does
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _interrupt)
    with tempfile.TemporaryDirectory(prefix="netids-lab-") as tmp, LabNetwork(HOSTS) as net:
        try:
            _start_servers(net, Path(tmp))
            asyncio.run(
                _session(net, report, duration, list(attacks), random.Random(seed), settings)
            )
        finally:
            _remove_resolv_confs(net)
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)
    return report


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def _start_servers(net: LabNetwork, tmp: Path) -> None:
    www = tmp / "www"
    www.mkdir()
    rng = random.Random(1)
    for size in FILE_SIZES:
        (www / f"f{size}.bin").write_bytes(rng.randbytes(size))
    (www / "index.html").write_text("<html><body>" + "lab " * 400 + "</body></html>")
    for host in net.hosts.values():  # `ip netns exec` bind-mounts these over /etc/resolv.conf
        etc = Path("/etc/netns") / host.ns
        etc.mkdir(parents=True, exist_ok=True)
        (etc / "resolv.conf").write_text(f"nameserver {net.ip('dns')}\nsearch {DOMAIN}\n")
    net.popen(
        "srv",
        sys.executable,
        "-m",
        "http.server",
        "80",
        "--bind",
        net.ip("srv"),
        "--directory",
        str(www),
    )
    net.popen(
        "web2",
        sys.executable,
        "-m",
        "http.server",
        "8080",
        "--bind",
        net.ip("web2"),
        "--directory",
        str(www),
    )
    for port in range(5201, 5201 + len(CLIENTS)):
        net.popen("srv", "iperf3", "-s", "-p", str(port), "-B", net.ip("srv"))
    served_by = {"www": "srv", "api": "srv", "intranet": "srv", "files": "web2", "cdn": "web2",
                 "mail": "web2"}  # fmt: skip
    records = [f"--address=/{n}.{DOMAIN}/{net.ip(h)}" for n, h in served_by.items()]
    net.popen(
        "dns",
        "dnsmasq",
        "--keep-in-foreground",
        "--no-resolv",
        "--no-hosts",
        "--conf-file=/dev/null",
        f"--pid-file={tmp / 'dnsmasq.pid'}",
        f"--listen-address={net.ip('dns')}",
        "--bind-interfaces",
        "--user=root",
        f"--local=/{DOMAIN}/",
        f"--txt-record={DOMAIN},v=spf1 -all",
        f"--mx-host={DOMAIN},mail.{DOMAIN},10",
        *records,
    )
    net.run(ATTACKER, "sysctl", "-qw", "net.ipv4.ip_forward=1")  # arpspoof as a man in the middle
    _wait_listening(net, "srv", 80)
    _wait_listening(net, "web2", 8080)
    _wait_listening(net, "dns", 53)


def _remove_resolv_confs(net: LabNetwork) -> None:
    for host in net.hosts.values():
        shutil.rmtree(Path("/etc/netns") / host.ns, ignore_errors=True)
    with contextlib.suppress(OSError):
        Path("/etc/netns").rmdir()  # only if empty: others' files stay


def _wait_listening(net: LabNetwork, host: str, port: int, timeout: float = 5.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if f":{port} " in net.run(host, "ss", "-lntu", check=False):
            return
        time.sleep(0.1)
    raise LabError(f"{host}: nothing listens on port {port} after {timeout:.0f} s")


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
    t0 = time.time()
    tasks = [
        asyncio.create_task(_client(net, c, rng.randrange(2**32), t0 + duration)) for c in CLIENTS
    ]
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
        span = Span(attack, now, now + budget)
        report.spans.append(span)  # the labeller sees it while it runs
        log.info("attack %s: %s", attack.name, " ".join(argv))
        with contextlib.suppress(TimeoutError):
            await net.exec(ATTACKER, *argv, timeout=budget)
        span.end = time.time()
        await asyncio.sleep(ATTACK_GAP)


async def _client(net: LabNetwork, host: str, seed: int, end: float) -> None:
    """Normal behaviour of one client until ``end``: web, DNS, ping and bulk UDP/TCP.

    Activity comes in sessions: every few actions the mean pause between actions is drawn
    again, so clients alternate between busy and quiet stretches.
    """
    rng = random.Random(seed)
    port = str(5201 + CLIENTS.index(host))
    srv, web2, dns = net.ip("srv"), net.ip("web2"), net.ip("dns")
    pause, left_in_session = 1.0, 0
    while time.time() < end - 0.5:
        if left_in_session <= 0:
            pause, left_in_session = rng.uniform(0.15, 2.5), rng.randint(3, 15)
        left_in_session -= 1
        left = end - time.time()
        cmd = _client_action(rng, port, srv, web2, dns)
        with contextlib.suppress(TimeoutError):
            await net.exec(host, *cmd, timeout=min(10.0, max(0.5, left)))
        await asyncio.sleep(min(rng.expovariate(1 / pause), 4.0))


def _client_action(rng: random.Random, port: str, srv: str, web2: str, dns: str) -> list[str]:
    """One command line of normal client behaviour."""

    def size() -> int:
        return rng.choices(FILE_SIZES, FILE_WEIGHTS)[0]

    roll = rng.random()
    if roll < 0.25:  # downloads, one connection after the other
        target = rng.choice([f"www.{DOMAIN}", f"api.{DOMAIN}", srv])
        cmd = ["curl", "-s", "--max-time", "8"]
        for _ in range(rng.randint(1, 3)):
            cmd += ["-o", "/dev/null", f"http://{target}/f{size()}.bin"]
        return cmd
    if roll < 0.35:  # a page with its resources, fetched in parallel like a browser
        base = f"http://{rng.choice(['www', 'intranet'])}.{DOMAIN}"
        cmd = ["curl", "-s", "-Z", "--max-time", "8", "-o", "/dev/null", f"{base}/index.html"]
        for _ in range(rng.randint(2, 6)):
            cmd += ["-o", "/dev/null", f"{base}/f{rng.choice(FILE_SIZES[:5])}.bin"]
        return cmd
    if roll < 0.43:
        return [
            *["wget", "-q", "-O", "/dev/null", "-T", "8", "-t", "1"],
            f"http://{web2}:8080/f{size()}.bin",
        ]
    if roll < 0.47:
        return [
            *["curl", "-s", "-o", "/dev/null", "--max-time", "5", "-I"],
            f"http://files.{DOMAIN}:8080/",
        ]
    if roll < 0.72:
        qtype = rng.choice(["A", "A", "A", "AAAA", "TXT", "MX"])
        return ["dig", "+tries=1", "+time=2", f"{rng.choice(NAMES)}.{DOMAIN}", qtype]
    if roll < 0.85:
        count, length = str(rng.randint(1, 4)), str(rng.choice([56, 56, 120, 1000]))
        return ["ping", "-c", count, "-i", "0.2", "-W", "1", "-s", length,
                rng.choice([srv, web2, dns])]  # fmt: skip
    if roll < 0.94:  # a short UDP stream
        rate, length = f"{rng.choice([300, 800, 1500])}K", str(rng.choice([200, 600, 1200]))
        return ["iperf3", "-c", srv, "-p", port, "-u", "-b", rate, "-t", "1", "-l", length]
    return ["iperf3", "-c", srv, "-p", port, "-n", f"{rng.choice([100, 300, 600])}K"]


# --------------------------------------------------------------------------- labels and pcap


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
    with report.pcap.open("wb") as pcap, report.labels.open("w", newline="") as lab:
        rows = csv.writer(lab)
        rows.writerow(["index", "timestamp", "label", "attack_kind"])
        _pcap_header(pcap, source.settings.snaplen)
        async for batch in source.batches():
            _write_batch(pcap, rows, batch, report, labeller)


def _pcap_header(fh: BinaryIO, snaplen: int) -> None:
    fh.write(struct.pack("<IHHiIII", 0xA1B23C4D, 2, 4, 0, 0, snaplen, LINKTYPE_ETHERNET))


def _write_batch(
    fh: BinaryIO,
    rows: Any,  # a csv.writer
    batch: FrameBatch,
    report: LabReport,
    labeller: _Labeller,
) -> None:
    pack, buf = struct.Struct("<IIII").pack, batch.buf
    for s, cap, wire, ts in zip(
        batch.start.tolist(),
        batch.caplen.tolist(),
        batch.wirelen.tolist(),
        batch.ts.tolist(),
        strict=True,
    ):
        frame = buf[s : s + cap].tobytes()
        ns = round(ts * 1e9)
        fh.write(pack(ns // 10**9, ns % 10**9, cap, wire))
        fh.write(frame)
        kind = labeller.kind(frame, ts)
        rows.writerow([report.packets, f"{ts:.6f}", 1 if kind else 0, kind])
        report.packets += 1
        report.max_frame = max(report.max_frame, wire)
        if kind:
            report.attack_packets += 1
            report.by_kind[kind] = report.by_kind.get(kind, 0) + 1


def iter_labels(path: str | Path) -> Iterator[tuple[int, float, int, str]]:
    """Rows of a labels file as (index, timestamp, label, attack_kind)."""
    with Path(path).open(newline="") as fh:
        for row in csv.DictReader(fh):
            yield int(row["index"]), float(row["timestamp"]), int(row["label"]), row["attack_kind"]


def write_udp_burst(
    path: str | Path, count: int, src: Host, dst: Host, port: int, payload: int = 18
) -> None:
    """A pcap of ``count`` UDP datagrams ``src`` -> ``dst``:``port`` for tcpreplay pushes."""
    eth = bytes.fromhex(dst.mac.replace(":", "") + src.mac.replace(":", "")) + b"\x08\x00"
    sip, dip = (bytes(int(x) for x in h.ip.split(".")) for h in (src, dst))
    with Path(path).open("wb") as fh:
        _pcap_header(fh, 65535)
        rec = struct.Struct("<IIII")
        for i in range(count):
            udp = struct.pack("!HHHH", 40000 + i % 20000, port, 8 + payload, 0) + bytes(payload)
            ip = struct.pack(
                "!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), i & 0xFFFF, 0, 64, 17, 0, sip, dip
            )
            ip = ip[:10] + struct.pack("!H", _checksum(ip)) + ip[12:]
            frame = eth + ip + udp
            fh.write(
                rec.pack(
                    1_700_000_000 + i // 100_000, (i % 100_000) * 10_000, len(frame), len(frame)
                )
            )
            fh.write(frame)


def replay(net: LabNetwork, host: str, pcap: Path, pps: int | None,
           loops: int) -> tuple[int, float]:
    """Push ``pcap`` ``loops`` times from ``host`` with tcpreplay at ``pps`` packets/s (None:
    top speed); return (packets sent, seconds it took)."""
    speed = ["--topspeed"] if pps is None else ["--pps", str(pps)]
    out = net.run(host, "tcpreplay", "-q", "-i", "eth0", "-K", *speed, "--loop", str(loops),
                  str(pcap), timeout=120)
    sent = re.search(r"Successful packets:\s+(\d+)", out)
    secs = re.search(r"packets \(\d+ bytes\) sent in ([\d.]+) seconds", out)
    if sent is None or secs is None:
        raise LabError(f"tcpreplay printed no totals: {out.strip()[-200:]}")
    return int(sent.group(1)), float(secs.group(1))


@dataclass
class LiveCount:
    """What :func:`count_live` saw."""

    packets: int  # packets in the batches the source delivered
    rss_growth_mb: float  # this process's peak RSS above its level once the source ran


async def count_live(source: LiveSource, work: Callable[[], T]) -> tuple[T, LiveCount]:
    """Run blocking ``work`` (a traffic generator) in a thread while counting what ``source``
    captures and watching this process's memory; the source is started and stopped here."""
    source.start()
    counted, peak = 0, 0.0

    async def consume() -> None:
        nonlocal counted
        async for batch in source.batches():
            counted += len(batch)

    async def watch_memory() -> None:
        nonlocal peak
        while True:
            peak = max(peak, _rss_mb())
            await asyncio.sleep(0.1)

    consumer = asyncio.create_task(consume())
    await asyncio.sleep(0.5)
    base = _rss_mb()  # the ring is mapped by now
    watcher = asyncio.create_task(watch_memory())
    try:
        result = await asyncio.to_thread(work)
        await asyncio.sleep(0.5)  # the last frames reach the queue
    finally:
        source.stop()
        await consumer
        watcher.cancel()
    return result, LiveCount(counted, max(peak, _rss_mb()) - base)


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _checksum(data: bytes) -> int:
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF
