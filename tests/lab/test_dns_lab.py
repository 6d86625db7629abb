"""The DNS detectors on real programs: dnsmasq answering in one lab namespace, ``dig`` asking
from three others (a tunnel's random labels, a DGA's nonexistent names, ordinary lookups),
tcpdump capturing, and ``score --db`` on the capture storing the events as the app would."""

from __future__ import annotations

import json
import random
import shutil
import string
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from netids.lab.network import LabNetwork

pytestmark = pytest.mark.skipif(
    not (shutil.which("dig") and shutil.which("dnsmasq") and shutil.which("tcpdump")),
    reason="needs dig (dnsutils), dnsmasq and tcpdump (scripts/setup.sh --dev)")
APP = str(Path(__file__).resolve().parents[2] / "app.py")
HOSTS = {"dns": 53, "tunnel": 61, "dga": 62, "plain": 63}


@pytest.fixture(scope="module")
def dns_lab() -> Iterator[LabNetwork]:
    import os

    if os.geteuid() != 0:
        pytest.skip("the lab needs root (network namespaces)")
    with LabNetwork(HOSTS) as net:
        yield net


def ask(net: LabNetwork, host: str, names: list[str], tmp: Path) -> None:
    """``dig`` in batch mode from ``host``: one query per name, answered or not."""
    batch = tmp / f"{host}.names"
    batch.write_text("".join(f"{n} A\n" for n in names))
    net.run(host, "dig", f"@{net.ip('dns')}", "+tries=1", "+time=2", "-f", str(batch),
            timeout=120)


def random_label(rng: random.Random, size: int) -> str:
    return "".join(rng.choice(string.ascii_lowercase + string.digits) for _ in range(size))


def test_tunnel_and_dga_lookups_are_events_and_ordinary_ones_are_not(
        dns_lab: LabNetwork, tmp_path: Path) -> None:
    net, rng = dns_lab, random.Random(17)
    net.popen("dns", "dnsmasq", "--keep-in-foreground", "--no-resolv", "--no-hosts",
              "--conf-file=/dev/null", f"--pid-file={tmp_path / 'dnsmasq.pid'}",
              f"--listen-address={net.ip('dns')}", "--bind-interfaces", "--user=root",
              "--local=/corp.test/", "--address=/tunnel.test/10.77.0.99",
              "--host-record=www.corp.test,10.77.0.80", "--host-record=mail.corp.test,10.77.0.81")
    capture = tmp_path / "dns.pcap"
    dump = net.popen("dns", "tcpdump", "-nn", "-i", "eth0", "-U", "-w", str(capture),
                     "udp port 53")
    deadline = time.monotonic() + 10
    while not (capture.exists() and capture.stat().st_size >= 24):
        assert time.monotonic() < deadline, "tcpdump did not start"
        time.sleep(0.1)
    time.sleep(0.5)
    ask(net, "plain", ["www.corp.test", "mail.corp.test", "www.corp.test"], tmp_path)
    ask(net, "tunnel", [f"{random_label(rng, 20)}.tunnel.test" for _ in range(150)], tmp_path)
    ask(net, "dga", [f"{random_label(rng, 12)}.corp.test" for _ in range(80)], tmp_path)
    ask(net, "plain", ["mail.corp.test"], tmp_path)
    time.sleep(0.5)
    dump.terminate()
    dump.wait(timeout=10)

    db = f"sqlite:///{tmp_path}/events.sqlite"
    done = subprocess.run([sys.executable, APP, "score", str(capture), "--out",
                           str(tmp_path / "scores.csv"), "--db", db],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "2 DNS alerts (tunnelling, NXDOMAIN bursts) stored as events" in done.stderr
    out = tmp_path / "events.jsonl"
    subprocess.run([sys.executable, APP, "export", "--db", db, "--format", "jsonl", "--out",
                    str(out)], check=True, capture_output=True, timeout=120)
    events = [json.loads(line) for line in out.read_text().splitlines()]
    dns = sorted((e for e in events if e["kind"] in ("DNS tunnelling", "NXDOMAIN burst")),
                 key=lambda e: e["kind"])
    assert [(e["kind"], e["src_ip"], e["dest_ip"], e["dest_port"], e["proto"]) for e in dns] == [
        ("DNS tunnelling", net.ip("tunnel"), net.ip("dns"), 53, "UDP"),
        ("NXDOMAIN burst", net.ip("dga"), net.ip("dns"), 53, "UDP")]
    tunnel, burst = dns
    assert 140 <= tunnel["packets"] <= 160  # past 128 names a HyperLogLog estimate
    assert tunnel["explanation"].startswith(
        f"{tunnel['packets']} distinct names under tunnel.test asked from {net.ip('tunnel')} in ")
    assert "20 characters" in tunnel["explanation"] and "(looks encoded)" in tunnel["explanation"]
    assert (tunnel["score"], burst["score"]) == (0.9999, 0.999999)  # low, medium: 4, 6 nines
    assert burst["packets"] == 80
    assert burst["explanation"].startswith(
        f"80 distinct names answered NXDOMAIN (no such name) to {net.ip('dga')} by "
        f"{net.ip('dns')} in ")
    assert not [e for e in events if net.ip("plain") in (e["src_ip"], e["dest_ip"])
                and e["kind"] in ("DNS tunnelling", "NXDOMAIN burst")]
