"""Helpers shared by the tests: where the shared captures live, scapy's reference dissection,
packet batches made to order, the app under NiceGUI's ``user``/``screen`` fixtures, and the
app as a real process driven by a real browser.

Fixtures live in ``tests/conftest.py``; this module holds their logic and the plain helpers
test modules import (``from tests.support import ...``).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scapy.all import (  # noqa: F401  (loads every layer binding scapy has)
    ARP,
    ICMP,
    IP,
    TCP,
    UDP,
    CookedLinux,
    CookedLinuxV2,
    Dot1AD,
    Dot1Q,
    Dot3,
    Ether,
    IPv6,
    IPv6ExtHdrFragment,
    Loopback,
    conf,
)
from scapy.layers.inet6 import _IPv6ExtHdr
from scapy.layers.ipsec import AH

from netids.capture.pcapfile import read_batches, write_pcap
from netids.config import DEFAULT_MODEL, PROJECT_ROOT
from netids.detect.frames import LINKTYPE_ETHERNET, LINKTYPE_LINUX_SLL, LINKTYPE_LINUX_SLL2
from netids.detect.packets import PacketBatch, parse_ip
from netids.parallel.procs import processes

os.environ.setdefault("SE_OFFLINE", "true")  # Selenium Manager must not try the network
if "CHROME_BINARY_LOCATION" not in os.environ and shutil.which("chromium"):
    os.environ["CHROME_BINARY_LOCATION"] = str(shutil.which("chromium"))

SAMPLE = PROJECT_ROOT / "netids" / "samples" / "lab_sample.pcap"


# the shared captures (the ``shared_data`` fixture) ----------------------------------------------

SHARED_DATA_ENV = "NETIDS_SHARED_DATA"
NO_SHARED_DATA = "(shared data absent)"  # the one parameter when there is nothing to list


def shared_data_dir() -> Path:
    """The shared capture folder: ``$NETIDS_SHARED_DATA``, else ``shared/data`` beside the
    project."""
    env = os.environ.get(SHARED_DATA_ENV)
    return Path(env) if env else PROJECT_ROOT.parent / "shared" / "data"


def shared_data_or_skip() -> Path:
    """The shared capture folder, or skip the test with the one message every test gives."""
    path = shared_data_dir()
    if not (path / "MANIFEST.tsv").exists():
        pytest.skip(f"shared captures not found at {path} (set {SHARED_DATA_ENV})")
    return path


def all_captures(data: Path) -> list[Path]:
    return sorted(p for p in data.rglob("*") if p.suffix in (".pcap", ".pcapng"))


def shared_capture_names() -> list[str]:
    """Every shared capture, relative to the folder, to parametrise over at collection; when
    the folder is absent, one placeholder (the test then skips through ``shared_data``)."""
    data = shared_data_dir()
    if not (data / "MANIFEST.tsv").exists():
        return [NO_SHARED_DATA]
    return [p.relative_to(data).as_posix() for p in all_captures(data)]


# reference values for decoder fields, from scapy's full dissection of a frame -----------------

IPV6_EXT = (_IPv6ExtHdr, AH)


def dissect(frame: bytes, linktype: int) -> Any:
    cls = conf.l2types.get(linktype)
    return None if cls is None else cls(frame)


def truth(pkt: Any, linktype: int) -> dict[str, int | None]:
    """Fields the decoder must reproduce, named as PacketBatch columns; absent fields are
    left out (the decoder must report them missing); None: not to be compared."""
    out: dict[str, int | None] = {}
    layer = pkt
    if type(pkt) is Dot3:
        out["dst_mac"] = int(pkt.dst.replace(":", ""), 16)
        out["src_mac"] = int(pkt.src.replace(":", ""), 16)
        return out
    if type(pkt) is Ether:
        out["dst_mac"] = int(pkt.dst.replace(":", ""), 16)
        out["src_mac"] = int(pkt.src.replace(":", ""), 16)
        out["ethertype"] = pkt.type
        layer = pkt.payload
        first = True
        while type(layer) in (Dot1Q, Dot1AD):
            if first:
                out["vlan"] = layer.vlan
                first = False
            out["ethertype"] = layer.type
            layer = layer.payload
        if out["ethertype"] < 0x600:
            del out["ethertype"]
    elif linktype in (LINKTYPE_LINUX_SLL, LINKTYPE_LINUX_SLL2):
        out["ethertype"] = pkt.proto
        layer = pkt.payload
    else:
        layer = pkt.payload if type(pkt) is Loopback else pkt
    t = type(layer)
    if t is ARP:
        out["arp_op"] = layer.op
        if layer.hwlen == 6 and layer.plen == 4:
            out["arp_sha"] = int(layer.hwsrc.replace(":", ""), 16)
            out["src_lo"] = parse_ip(layer.psrc)[1]
            out["dst_lo"] = parse_ip(layer.pdst)[1]
        return out
    if t is IP:
        out.update(ip_version=4, ttl=layer.ttl, proto=layer.proto, frag=layer.frag,
                   src_lo=parse_ip(layer.src)[1], dst_lo=parse_ip(layer.dst)[1],
                   # a length field under the header's (TSO writes 0): the decoder takes the
                   # frame's length on the wire instead, which scapy does not know
                   ip_len=layer.len if layer.len >= layer.ihl * 4 else None)
        layer = layer.payload
    elif t is IPv6:
        src, dst = parse_ip(layer.src), parse_ip(layer.dst)
        out.update(ip_version=6, ttl=layer.hlim, src_hi=src[0], src_lo=src[1],
                   dst_hi=dst[0], dst_lo=dst[1], ip_len=40 + layer.plen)
        nh, frag = layer.nh, 0
        layer = layer.payload
        while isinstance(layer, IPV6_EXT):
            if type(layer) is IPv6ExtHdrFragment:
                frag = layer.offset
            nh = layer.nh
            layer = layer.payload
        out.update(proto=nh, frag=frag)
    else:
        return out
    t = type(layer)
    if t is TCP:
        out.update(sport=layer.sport, dport=layer.dport, tcp_flags=int(layer.flags),
                   window=layer.window, seq=layer.seq)
    elif t is UDP:
        out.update(sport=layer.sport, dport=layer.dport, udp_len=layer.len)
    elif t is ICMP or (out.get("proto") == 58 and "type" in layer.fields):
        # some ICMPv6 classes (MLDv2 reports) name the second byte "res", not "code"
        code = layer.code if "code" in layer.fields else bytes(layer)[1]
        out.update(icmp_type=layer.type, icmp_code=code)
    return out


# packet batches made to order ------------------------------------------------------------------

def make_packets(
    n: int,
    *,
    src: str | list[str],
    dst: str | list[str],
    sport: int = 40000,
    dport: int = 80,
    proto: int = 6,
    ts: np.ndarray | None = None,
) -> PacketBatch:
    """A :class:`PacketBatch` of ``n`` IPv4 packets with the given addresses."""

    def pairs(value: str | list[str]) -> tuple[np.ndarray, np.ndarray]:
        values = [value] * n if isinstance(value, str) else value
        hl = np.array([parse_ip(v) for v in values], dtype=np.uint64).reshape(n, 2)
        return hl[:, 0].copy(), hl[:, 1].copy()

    src_hi, src_lo = pairs(src)
    dst_hi, dst_lo = pairs(dst)

    def col(value: int, dtype: type) -> np.ndarray:
        return np.full(n, value, dtype=dtype)

    return PacketBatch(
        ts=np.arange(n, dtype=np.float64) * 0.001 if ts is None else np.asarray(ts, np.float64),
        length=col(60, np.int32), status=col(7, np.uint16), ethertype=col(0x0800, np.int32),
        vlan=col(-1, np.int32), src_mac=col(0x020000000001, np.uint64),
        dst_mac=col(0x020000000002, np.uint64), ip_version=col(4, np.int8),
        proto=col(proto, np.int16), ttl=col(64, np.int16), src_hi=src_hi, src_lo=src_lo,
        dst_hi=dst_hi, dst_lo=dst_lo, frag=col(0, np.int32), sport=col(sport, np.int32),
        dport=col(dport, np.int32), tcp_flags=col(2 if proto == 6 else -1, np.int16),
        window=col(1024, np.int32), udp_len=col(-1, np.int32), icmp_type=col(-1, np.int16),
        icmp_code=col(-1, np.int16), arp_op=col(-1, np.int16), arp_sha=col(0, np.uint64),
        payload=col(0, np.int32), ip_len=col(40 if proto == 6 else 28, np.int32),
        seq=col(0 if proto == 6 else -1, np.int64), payload_at=col(-1, np.int32),
    )


# waiting on the app ---------------------------------------------------------------------------

def wait_until(condition: Callable[[], object], timeout: float = 15.0, what: str = "") -> None:
    """Wait, blocking, until ``condition()`` holds: for ``screen`` tests (the app runs in its
    own thread) and for the app as a process. Asynchronous tests use :func:`until`."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.1)


# the app under NiceGUI's user and screen fixtures (tests/ui/) ----------------------------------
#
# The app runs as users start it: NiceGUI's ``user`` and ``screen`` fixtures execute ``app.py``
# (``main_file`` in pyproject.toml) with the command line set by ``app_paths``, so every test
# has its own SQLite database, models folder and the shipped model.

# the browser tests' pictures: screenshots/ (not in git) on every run; docs/, which the README
# shows, only when asked (NETIDS_UPDATE_DOCS=1), so a test run leaves the tree clean
SHOTS = PROJECT_ROOT / ("docs" if os.environ.get("NETIDS_UPDATE_DOCS") == "1" else "screenshots")


@dataclass
class AppPaths:
    db_url: str
    db_path: Path
    models_dir: Path
    model: Path


@pytest.fixture(autouse=True)  # autouse: set before ``user``/``screen`` run app.py
def app_paths(tmp_path: Path, trained_model: Path, monkeypatch: pytest.MonkeyPatch) -> AppPaths:
    """Command line of the app under test: its own database and models folder, the model
    that ships (tests/conftest.py), and the test's folder as captures folder, holding a copy
    of the bundled sample; learning in place off (tests/ui/test_learning.py turns it on).
    Autouse in the modules that import it (the UI tests)."""
    db = tmp_path / "ui.sqlite"
    models = tmp_path / "models"
    models.mkdir()
    shutil.copy(SAMPLE, tmp_path / SAMPLE.name)  # the path fields read only the captures folder
    paths = AppPaths(f"sqlite:///{db}", db, models, trained_model)
    monkeypatch.setattr(sys, "argv", ["app.py", "--db", paths.db_url, "--model",
                                      str(trained_model), "--models-dir", str(models),
                                      "--captures-dir", str(tmp_path), "--no-learn"])
    return paths


def controller_of_app():
    """The controller of the running app (tests wait on it; they assert on what is shown)."""
    from nicegui import app

    return app.state.controller


def small_pcap(path: Path, packets: int) -> Path:
    """The first ``packets`` frames of the bundled sample, as a pcap file."""
    frames: list[tuple[float, bytes, int]] = []
    for batch in read_batches(SAMPLE):
        for i in range(len(batch)):
            frames.append((float(batch.ts[i]), batch.frame(i), int(batch.wirelen[i])))
            if len(frames) >= packets:
                break
        if len(frames) >= packets:
            break
    write_pcap(path, frames, linktype=LINKTYPE_ETHERNET)
    return path


async def until(condition: Callable[[], bool], timeout: float = 20.0,
                what: str = "condition") -> None:
    """Wait (letting the app run) until ``condition()`` holds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.05)


# the app as a real process, a real browser (LAN and native mode) -------------------------------
#
# The app runs exactly as a user starts it (``python app.py ...``) in its own session, with its
# own users file, database and models folder; nothing of netids is imported or mocked there.

START_SECONDS = 60.0  # the app imports torch and opens the database: allow a slow machine


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def clean_env(**extra: str) -> dict[str, str]:
    """The environment for a child app: no pytest or NiceGUI test variables (NiceGUI would
    think it runs under pytest and pick the screen-test port), no credentials from outside."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PYTEST_", "NICEGUI_")) and k not in {
               "NETIDS_ADMIN_PASSWORD_HASH", "NETIDS_USERS_FILE", "NETIDS_REQUIRE_LOGIN"}}
    env.update(extra)
    return env


def model_for_tests() -> Path:
    """The shipped model: a model that fails to load must fail these tests too, not be
    replaced behind their back."""
    assert DEFAULT_MODEL.exists(), f"{DEFAULT_MODEL} must ship with the project"
    return DEFAULT_MODEL


def add_user(users_file: Path, name: str, role: str, password: str) -> None:
    """``python app.py users add NAME --role ROLE --password-stdin`` (the real command)."""
    subprocess.run([sys.executable, "app.py", "users", "add", name, "--role", role,
                    "--password-stdin"], input=password + "\n", text=True, cwd=PROJECT_ROOT,
                   env=clean_env(NETIDS_USERS_FILE=str(users_file)), check=True,
                   capture_output=True, timeout=60)


class AppProcess:
    """``python app.py ARGS`` in its own session; ``stop()`` ends it and everything it started."""

    def __init__(self, args: list[str], env: dict[str, str], log_path: Path) -> None:
        self.log_path = log_path
        self._log = log_path.open("wb")
        self.proc = subprocess.Popen([sys.executable, "app.py", *args], cwd=PROJECT_ROOT,
                                     env=env, stdout=self._log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        self.session = self.proc.pid  # session id of the app and all its children

    def log(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def wait_http(self, url: str, timeout: float = START_SECONDS) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"app exited with {self.proc.returncode}:\n{self.log()}")
            try:
                urllib.request.urlopen(url, timeout=2).close()
                return
            except urllib.error.HTTPError:
                return  # it answers
            except OSError:
                time.sleep(0.2)
        raise AssertionError(f"app did not answer {url} within {timeout} s:\n{self.log()}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        """Signal the app, wait for it, then make sure nothing of its session is left."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        deadline = time.monotonic() + 5  # orphans get a moment to notice and exit by themselves
        while (leftovers := session_processes(self.session)) and time.monotonic() < deadline:
            time.sleep(0.1)
        for pid in leftovers:  # do not leak into other tests, but report it
            _kill(pid)
        self._log.close()
        if leftovers:
            raise AssertionError(f"processes left behind: {leftovers}")
        return int(self.proc.returncode)


def session_processes(sid: int) -> dict[int, str]:
    """pid -> command line of the live processes in session ``sid``."""
    return {p.pid: p.cmd for p in processes() if p.sid == sid and p.alive}


def _kill(pid: int) -> None:
    with suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


@contextmanager
def chromium() -> Iterator[object]:
    """A headless Debian Chromium driven by Selenium (no network, no Selenium Manager)."""
    os.environ.setdefault("SE_OFFLINE", "true")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver")
    if not binary or not driver_path:
        pytest.skip("needs Debian's chromium and chromium-driver")
    options = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--disable-gpu", "--window-size=1280,900",
                "--disable-background-networking", "--disable-component-update",
                "--no-first-run", "--disable-dev-shm-usage"):
        options.add_argument(arg)
    if os.geteuid() == 0:
        options.add_argument("--no-sandbox")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})  # driver.get_log("browser")
    options.binary_location = binary
    driver = webdriver.Chrome(options=options, service=Service(driver_path))
    driver.implicitly_wait(0)
    try:
        yield driver
    finally:
        driver.quit()


# a veth pair to capture on, its other end in a namespace to replay from (learning tests) --------

@dataclass
class Veth:
    """``host_end`` here to capture on; ``ns_end`` in namespace ``ns`` to replay from."""

    ns: str
    host_end: str
    ns_end: str

    def replay(self, pcap: Path, multiplier: float) -> subprocess.Popen:
        """tcpreplay ``pcap`` out of the namespace's end, ``multiplier`` times its speed."""
        return subprocess.Popen(["ip", "netns", "exec", self.ns, "tcpreplay", "-q", "-i",
                                 self.ns_end, f"--multiplier={multiplier}", str(pcap)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


@contextmanager
def veth_pair(ns: str, host_end: str, ns_end: str) -> Iterator[Veth]:
    """Make the pair (offloads off, so no 64 KB super-frames), delete it afterwards. Make it
    before a browser starts: Chromium fails loads while interfaces appear. Needs root."""
    if os.geteuid() != 0:
        pytest.skip("needs root (a veth pair and a network namespace)")
    run = lambda *cmd: subprocess.run(cmd, check=True, capture_output=True)  # noqa: E731
    subprocess.run(["ip", "netns", "del", ns], capture_output=True)
    subprocess.run(["ip", "link", "del", host_end], capture_output=True)
    run("ip", "netns", "add", ns)
    try:
        run("ip", "link", "add", host_end, "type", "veth", "peer", "name", ns_end, "netns", ns)
        run("ip", "link", "set", host_end, "up")
        run("ip", "netns", "exec", ns, "ip", "link", "set", ns_end, "up")
        for args in (["ethtool", "-K", host_end], ["ip", "netns", "exec", ns, "ethtool", "-K",
                                                   ns_end]):
            subprocess.run([*args, "tso", "off", "gso", "off", "gro", "off"],
                           capture_output=True)
        yield Veth(ns, host_end, ns_end)
    finally:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)  # the veth goes too
        subprocess.run(["ip", "link", "del", host_end], capture_output=True)
