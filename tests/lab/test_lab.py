"""The traffic lab as its user runs it: a short session, its pcap and labels, and cleanup."""

from __future__ import annotations

import csv
import os
import subprocess
from pathlib import Path

import pytest

from netids.capture.pcapfile import read_batches
from netids.lab.attacks import parse_attacks
from netids.lab.network import (
    PREFIX,
    LabError,
    LabNetwork,
    lab_namespaces,
    remove_stale_namespaces,
)
from netids.lab.recorder import run_lab
from netids.lab.scenario import HOSTS

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the lab needs root")


@pytest.mark.slow
def test_short_lab_session_writes_labelled_capture_and_leaves_nothing(tmp_path: Path) -> None:
    report = run_lab(tmp_path, "short", 14, parse_attacks("syn_scan,syn_flood"), seed=3)

    frames = [
        (b.frame(i), float(b.ts[i]), int(b.wirelen[i]))
        for b in read_batches(tmp_path / "short.pcap")
        for i in range(len(b))
    ]
    with (tmp_path / "short.labels.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == ["index", "timestamp", "label", "attack_kind"]
    assert len(rows) == len(frames) == report.packets > 1000
    assert [int(r["index"]) for r in rows] == list(range(len(rows)))
    assert all(abs(float(r["timestamp"]) - f[1]) < 1e-5 for r, f in zip(rows, frames, strict=True))

    attacker = bytes([10, 77, 0, 66])
    kinds = {r["attack_kind"] for r in rows if r["label"] == "1"}
    assert kinds == {"port_scan", "syn_flood"}
    assert all(r["attack_kind"] == "" for r in rows if r["label"] == "0")
    for (frame, _, _), row in zip(frames, rows, strict=True):
        ip = frame[12:14] == b"\x08\x00" and frame[23] in (1, 6, 17)  # ICMP, TCP, UDP
        if ip and attacker in (frame[26:30], frame[30:34]):
            assert row["label"] == "1"  # every packet to or from the attacker is an attack
    benign = [f for (f, _, _), r in zip(frames, rows, strict=True) if r["label"] == "0"]
    ports = {int.from_bytes(f[34:36], "big") for f in benign if f[12:14] == b"\x08\x00"} | {
        int.from_bytes(f[36:38], "big") for f in benign if f[12:14] == b"\x08\x00"
    }
    assert {53, 80} <= ports  # DNS and HTTP among the normal traffic
    assert any(f[12:14] == b"\x08\x00" and f[23] == 1 for f in benign)  # ICMP
    assert max(w for _, _, w in frames) <= 1514 + 4  # offloads off: no GSO super-frames
    assert report.kernel_drops == report.queue_drops == 0
    mine = f"{PREFIX}{os.getpid()}-"  # other lab runs on this machine may be going on
    assert lab_namespaces(mine) == []
    assert not any(p.name.startswith(mine) for p in Path("/etc/netns").glob("*"))


def test_lab_network_is_removed_after_an_error() -> None:
    with pytest.raises(RuntimeError), LabNetwork({"x": 31, "y": 32}) as net:
        net.popen("x", "sleep", "60")  # a process inside keeps a namespace alive unless killed
        assert len(lab_namespaces(net.prefix)) == 3
        raise RuntimeError("boom")
    assert lab_namespaces(net.prefix) == []


def test_namespaces_of_a_dead_lab_run_are_removed() -> None:
    stale = f"{PREFIX}999999999-dead-sw"
    subprocess.run(["ip", "netns", "add", stale], check=True)
    remove_stale_namespaces()
    assert stale not in lab_namespaces()


def test_unknown_attack_names_are_refused_plainly() -> None:
    with pytest.raises(LabError, match="unknown attack"):
        parse_attacks("syn_scan,teleport")
    assert parse_attacks("none") == []
    assert {a.name for a in parse_attacks("all")} >= {"syn_scan", "udp_scan", "arp_spoof"}


def test_lab_command_refuses_bad_arguments_in_one_line(tmp_path: Path, capsys) -> None:
    from netids.cli import main

    assert main(["lab", "--out", str(tmp_path), "--attacks", "syn_scan,teleport"]) == 2
    assert capsys.readouterr().err.startswith("error: unknown attack(s) teleport; known: ")
    assert main(["lab", "--out", str(tmp_path), "--duration", "1"]) == 2
    assert "between 3 and 3600 seconds" in capsys.readouterr().err
    assert lab_namespaces(f"{PREFIX}{os.getpid()}-") == []


@pytest.mark.slow
def test_a_varied_run_keeps_its_hosts_to_their_plan(tmp_path: Path) -> None:
    report = run_lab(tmp_path, "varied", 24, [], seed=6, varied=True)
    life, ip = report.life, {h: bytes([10, 77, 0, n]) for h, n in HOSTS.items()}
    assert life.background is not None and life.background.kind == "ping"

    starts: dict[bytes, list[float]] = {}  # each host's new TCP sessions, UDP and echoes
    echoes: dict[bytes, int] = {}
    sent: dict[bytes, list[float]] = {}  # each MAC's frames, whatever they hold
    for batch in read_batches(tmp_path / "varied.pcap"):
        for i in range(len(batch)):
            f = batch.frame(i)
            sent.setdefault(f[6:12], []).append(float(batch.ts[i]) - report.started)
            if f[12:14] != b"\x08\x00":
                continue
            proto, body = f[23], f[14 + (f[14] & 15) * 4:]
            echo = proto == 1 and body[0] == 8
            echoes[f[26:30]] = echoes.get(f[26:30], 0) + echo
            if echo or proto == 17 or (proto == 6 and body[13] & 0x12 == 0x02):
                starts.setdefault(f[26:30], []).append(float(batch.ts[i]) - report.started)
    for name, client in life.clients.items():
        times = starts.get(ip[name], [])
        assert times, f"{name} sent nothing"
        assert min(times) >= client.join - 0.2, f"{name} began before it joined"
        assert max(times) <= client.leave + 0.5, f"{name} went on after it left"
        frames = sent[bytes([2, 0x77, 0, 0, 0, HOSTS[name]])]
        assert min(frames) >= client.join - 0.2 and max(frames) <= client.leave + 0.5  # link
        for a, b in client.pauses:
            assert not [t for t in times if a + 0.5 < t < b - 0.2], f"{name} paused {a}-{b}"
    assert echoes[ip[life.background.host]] >= 2 * len(life.background.targets)  # two rounds


@pytest.mark.slow
def test_the_lab_command_prints_a_varied_runs_plan(tmp_path: Path, capsys) -> None:
    from netids.cli import main
    from netids.lab.life import plan_life
    from netids.lab.scenario import CLIENTS

    assert main(["lab", "--out", str(tmp_path), "--duration", "8", "--attacks", "none",
                 "--seed", "4", "--varied"]) == 0
    out = capsys.readouterr().out
    assert f"life: {plan_life(4, 8.0, CLIENTS, varied=True).describe()}\n" in out
    assert "joins at" in out and "leaves at" in out and "pings" in out
