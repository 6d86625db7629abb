"""Behaviour detectors on traffic of real programs in lab namespaces, captured live: an ssh
client guessing root's password against a real sshd, then logging in with a key; nmap
scanning, fast, and the same probes spread over hours for the slow tier."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from netids.capture.live import LiveSource
from netids.config import CaptureSettings
from netids.detect.behaviour import BehaviourDetectors
from netids.detect.behaviour_base import BehaviourAlert
from netids.detect.behaviour_scan import failed_attempt
from netids.detect.conn_records import ConnRecord
from netids.detect.connections import ConnTracker
from netids.detect.decode import decode
from netids.detect.frames import FrameBatch

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the lab needs root (namespaces)")
SETTINGS = CaptureSettings(batch_size=512, batch_timeout=0.05)
SSH_CLIENT = ("-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
              "-o", "ConnectTimeout=5", "-o", "LogLevel=ERROR")


async def capture_records(lab_net, bpf: str, action: Callable[[], None]) -> list[ConnRecord]:
    """Capture on the lab's bridge while ``action`` runs in a thread; the connection
    records of what was captured, every connection written out at the end."""
    tracker, records = ConnTracker(), []
    await capture_batches(lab_net, bpf, action,
                          lambda batch: records.extend(tracker.update(decode(batch))))
    return records + tracker.flush()


async def capture_batches(lab_net, bpf: str, action: Callable[[], None],
                          each: Callable[[FrameBatch], None]) -> None:
    """Capture on the lab's bridge while ``action`` runs in a thread, handing ``each`` batch
    captured on."""
    source = LiveSource("br0", bpf, SETTINGS, netns=lab_net.switch)
    source.start()

    async def act_then_stop() -> None:
        try:
            await asyncio.sleep(0.2)
            await asyncio.to_thread(action)
            await asyncio.sleep(0.5)
        finally:
            source.stop()

    task = asyncio.create_task(act_then_stop())
    async for batch in source.batches():
        each(batch)
    await task


@pytest.fixture
def sshd(lab_net, tmp_path: Path) -> Iterator[Path]:
    """A real OpenSSH server on host b, port 22: root's password never matches (no PAM, the
    account has none), a key in ``tmp_path/client`` logs in. Stopped afterwards."""
    binary = shutil.which("sshd") or "/usr/sbin/sshd"
    if not (Path(binary).exists() and shutil.which("sshpass") and shutil.which("ssh-keygen")):
        pytest.skip("needs openssh-server, openssh-client and sshpass (apt)")
    made_run = not Path("/run/sshd").exists()
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation dir
    for name in ("host", "client"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f",
                        str(tmp_path / name)], check=True, capture_output=True, timeout=30)
    shutil.copy(tmp_path / "client.pub", tmp_path / "authorized_keys")
    config = tmp_path / "sshd_config"
    config.write_text(
        f"Port 22\nListenAddress {lab_net.ip('b')}\nHostKey {tmp_path / 'host'}\n"
        f"PidFile {tmp_path / 'sshd.pid'}\nAuthorizedKeysFile {tmp_path / 'authorized_keys'}\n"
        "PermitRootLogin yes\nPasswordAuthentication yes\nKbdInteractiveAuthentication no\n"
        "UsePAM no\nStrictModes no\nMaxStartups 100\n")
    server = lab_net.popen("b", binary, "-D", "-e", "-f", str(config))
    try:
        wait_for_port(lab_net, "a", lab_net.ip("b"), 22)
        yield tmp_path / "client"
    finally:
        server.terminate()
        server.wait(timeout=10)
        if made_run:
            shutil.rmtree("/run/sshd", ignore_errors=True)


def wait_for_port(lab_net, host: str, ip: str, port: int, timeout: float = 10.0) -> None:
    probe = f"import socket; socket.create_connection(('{ip}', {port}), 1).close()"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if "ok" in lab_net.run(host, "python3", "-c", probe + "; print('ok')", check=False):
            return
        time.sleep(0.2)
    raise AssertionError(f"nothing listens on {ip}:{port}")


async def test_ssh_password_guessing_then_a_key_login_against_a_real_sshd(
        lab_net, sshd: Path) -> None:
    b = lab_net.ip("b")

    def guess_then_login() -> None:
        for i in range(12):  # 12 wrong passwords, one per connection, as hydra -t 1 does
            lab_net.run("a", "sshpass", "-p", f"wrong{i}", "ssh", *SSH_CLIENT,
                        "-o", "PubkeyAuthentication=no", "-o", "NumberOfPasswordPrompts=1",
                        f"root@{b}", "true", check=False)
        lab_net.run("a", "ssh", *SSH_CLIENT, "-o", "BatchMode=yes", "-i", str(sshd),
                    f"root@{b}", "head -c 300000 /dev/zero | base64", timeout=60)

    records = await capture_records(lab_net, "tcp port 22", guess_then_login)
    alerts = BehaviourDetectors().update(records, now=max(r.ts for r in records))
    by_kind = {a.kind: a for a in alerts}
    assert set(by_kind) == {"brute_force", "login_after_guessing"}
    guess, win = by_kind["brute_force"], by_kind["login_after_guessing"]
    assert (guess.source, guess.targets, guess.service) == (lab_net.ip("a"), (f"{b}:22",),
                                                            "ssh")
    assert guess.count == 10 and guess.why.startswith(f"10 SSH sessions from {lab_net.ip('a')}")
    assert win.severity == "critical" and win.count == 12
    assert win.uids[-1] == max(records, key=lambda r: r.resp_bytes or 0).uid


async def test_hydra_guessing_several_passwords_a_session_is_found(
        lab_net, sshd: Path, tmp_path: Path) -> None:
    if not shutil.which("hydra"):
        pytest.skip("needs hydra (apt)")
    words = tmp_path / "passwords.txt"
    words.write_text("".join(f"guess{i}\n" for i in range(48)))
    b = lab_net.ip("b")
    # -w 8: hydra waits its response timeout (32 s by default) twice before it ends
    records = await capture_records(
        lab_net, "tcp port 22",
        lambda: lab_net.run("a", "sh", "-c", f"cd {tmp_path} && exec hydra -l root "
                            f"-P {words} -t 4 -w 8 ssh://{b}",  # its hydra.restore stays in tmp
                            timeout=180, check=False))
    sessions = [r for r in records if r.service == "ssh"]
    assert 10 <= len(sessions) < 48  # hydra (libssh) tries several passwords a connection
    alerts = BehaviourDetectors().update(records, now=max(r.ts for r in records))
    assert [(a.kind, a.source, a.targets) for a in alerts] == [
        ("brute_force", lab_net.ip("a"), (f"{b}:22",))]


async def test_a_real_nmap_scan_fast_and_spread_over_hours(lab_net) -> None:
    if not shutil.which("nmap"):
        pytest.skip("needs nmap (apt)")
    b = lab_net.ip("b")
    records = await capture_records(
        lab_net, f"host {b}",
        lambda: lab_net.run("a", "nmap", "-n", "-Pn", "-sS", "-p", "1000-1039", "--max-retries",
                            "0", "--scan-delay", "100ms", b, timeout=60))
    (fast,) = BehaviourDetectors().update(records, now=max(r.ts for r in records))
    assert (fast.kind, fast.source, fast.targets, fast.count) == (
        "vertical_scan", lab_net.ip("a"), (b,), 25)
    assert f"failed to connect to 25 ports on {b}" in fast.why
    # the same 40 probes, one every 20 minutes: the 15-min state forgets each one
    probes = sorted((r for r in records if failed_attempt(r)), key=lambda r: r.ts)
    assert len(probes) == 40
    slow = [dataclasses.replace(r, ts=1e9 + i * 1200.0) for i, r in enumerate(probes)]
    d = BehaviourDetectors()
    alerts: list[BehaviourAlert] = [a for r in slow for a in d.update([r], now=r.ts)]
    assert [(a.kind, a.count, a.last - a.first) for a in alerts] == [
        ("slow_scan", 25, 24 * 1200.0)]
