"""Normal life in the lab: its hosts, the servers they run and the clients that use them.

Servers (python http.server, dnsmasq, iperf3) answer clients that fetch files of varied sizes
with curl and wget, look names up with dig, ping and send short iperf3 bursts. Traffic goes
only to addresses of namespaces the lab made.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import shutil
import sys
import time
from pathlib import Path

from netids.lab.life import Background, ClientLife
from netids.lab.network import LabError, LabNetwork

HOSTS = {"srv": 10, "web2": 11, "dns": 53, "c1": 21, "c2": 22, "c3": 23, "c4": 24, "atk": 66}
CLIENTS = ("c1", "c2", "c3", "c4")
ATTACKER = "atk"
DOMAIN = "lab.test"
NAMES = ("www", "files", "cdn", "api", "mail", "intranet", "nosuch", "missing")
FILE_SIZES = (300, 1200, 4000, 9000, 20000, 48000, 120000, 350000, 1000000)
FILE_WEIGHTS = (12, 14, 14, 12, 10, 8, 5, 3, 1)
ALWAYS = ClientLife()


def start_servers(net: LabNetwork, tmp: Path) -> None:
    """Start the web, DNS and iperf3 servers (files under ``tmp``) and wait until they listen."""
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


def remove_resolv_confs(net: LabNetwork) -> None:
    """Delete the hosts' /etc/netns resolv.conf files that :func:`start_servers` wrote."""
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


async def run_client(
    net: LabNetwork, host: str, seed: int, end: float, life: ClientLife = ALWAYS
) -> None:
    """Normal behaviour of one client until ``end``: web, DNS, ping and bulk UDP/TCP.

    Activity comes in sessions: every few actions the mean pause between actions is drawn
    again, so clients alternate between busy and quiet stretches. ``life`` (seconds after
    this call) says when the client joins, pauses and leaves, and scales its pace; what it
    runs is stopped when it falls silent, and its link is down before it joins and after it
    leaves, so joining brings the housekeeping a host coming up sends (IPv6 duplicate
    address detection, multicast listener reports, router solicitations).
    """
    rng = random.Random(seed)
    port = str(5201 + CLIENTS.index(host))
    srv, web2, dns = net.ip("srv"), net.ip("web2"), net.ip("dns")
    pause, left_in_session = 1.0, 0
    t0 = time.time()
    linked = life.join <= 0
    if not linked:  # not on the network yet: its link comes up when it joins
        await _set_link(net, host, up=False)
    while time.time() < end - 0.5:
        now = time.time() - t0
        wait = life.wait(now)
        if wait is None:  # it leaves: its link goes down, as a laptop's does
            await _set_link(net, host, up=False)
            return
        if wait > 0:
            await asyncio.sleep(min(wait, end - time.time()))
            continue
        if not linked:
            await _set_link(net, host, up=True)
            linked = True
        if left_in_session <= 0:
            pause, left_in_session = rng.uniform(0.15, 2.5), rng.randint(3, 15)
        left_in_session -= 1
        left = min(end - time.time(), life.active_for(now))
        cmd = _client_action(rng, port, srv, web2, dns)
        with contextlib.suppress(TimeoutError):
            await net.exec(host, *cmd, timeout=min(10.0, max(0.5, left)))
        load = life.load(time.time() - t0)
        await asyncio.sleep(min(rng.expovariate(load / pause), 4.0 / load))


async def _set_link(net: LabNetwork, host: str, *, up: bool) -> None:
    await net.exec(host, "ip", "link", "set", "eth0", "up" if up else "down", timeout=5.0)


async def run_background(net: LabNetwork, job: Background, seed: int, end: float) -> None:
    """A periodic job until ``end``: health checks of a web server or a ping sweep."""
    rng = random.Random(seed)
    targets = [net.ip(t) for t in job.targets]
    if job.kind == "health":
        cmds = [["curl", "-s", "-o", "/dev/null", "-I", "--max-time", "2",
                 f"http://{ip}/"] for ip in targets]  # fmt: skip
    else:
        cmds = [["ping", "-c", "1", "-W", "1", ip] for ip in targets]
    await asyncio.sleep(rng.uniform(0, job.period))
    while time.time() < end - 0.5:
        for cmd in cmds:
            with contextlib.suppress(TimeoutError):
                await net.exec(job.host, *cmd, timeout=3.0)
        await asyncio.sleep(job.period * rng.uniform(0.9, 1.1))


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
