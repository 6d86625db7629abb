"""The lab network: namespaces joined to one bridge, and programs run inside them.

A switch namespace holds a bridge; every host is a namespace joined to it by a veth pair, with
an address in 10.77.0.0/24 and offloads off (so frames are wire-sized, never 64 KiB GSO
super-frames). Everything the lab made is torn down on exit, also after an error or Ctrl-C,
and namespaces left by a lab run that died are removed by the next one.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import re
import shutil
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

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
