"""Exfiltration and long connections: Slips' upload limits, RITA's long-connection grades,
and what learning a network's normal leaves out."""

from __future__ import annotations

import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

from netids.capture.pcapfile import read_batches
from netids.detect.behaviour import BehaviourDetectors
from netids.detect.behaviour_base import record
from netids.detect.behaviour_volume import VolumeDetector
from netids.detect.conn_records import ConnRecord
from netids.detect.connections import ConnTracker
from netids.detect.decode import decode

MB = 1_000_000
CLOUD = "203.0.113.9"


def upload(ts: float, sent: int, received: int = 20_000, uid: str = "U", **more: object
           ) -> ConnRecord:
    fields: dict[str, object] = dict(ts=ts, uid=uid, resp_h=CLOUD, resp_p=443, conn_state="SF",
                                     duration=60.0, orig_bytes=sent, resp_bytes=received)
    fields.update(more)
    return record(**fields)


def kinds(detector: VolumeDetector, records: list[ConnRecord]) -> list[tuple[str, str, int]]:
    return [(a.kind, a.severity, a.count) for r in records for a in detector.observe(r)[0]]


def test_uploads_over_an_hour_add_up_to_slips_limit() -> None:
    parts = [upload(600.0 * i, 90 * MB, uid=f"U{i}") for i in range(6)]  # 540 MB in 51 min
    d = VolumeDetector()
    assert kinds(d, parts) == [("exfiltration", "high", 540 * MB)]
    alert = d.observe(upload(4000.0, 1))[0]
    assert alert == []  # not again until the evidence doubles
    why = VolumeDetector().observe(upload(0.0, 520 * MB))[0][0].why
    assert why.startswith(f"10.0.0.1 sent 520.0 MB to {CLOUD}:443 (TCP) in 60 s, received 20 kB"
                          ": producer/consumer ratio 1.00")


def test_one_big_connection_is_an_upload_downloads_and_slow_trickles_are_not() -> None:
    assert kinds(VolumeDetector(), [upload(0.0, 120 * MB)]) == [
        ("exfiltration", "medium", 120 * MB)]
    assert kinds(VolumeDetector(), [upload(0.0, 1 * MB, received=900 * MB)]) == []
    trickle = [upload(3700.0 * i, 90 * MB, uid=f"T{i}") for i in range(10)]  # 90 MB an hour
    assert kinds(VolumeDetector(), trickle) == []
    group = [upload(0.0, 700 * MB, resp_h="239.1.2.3", proto="udp")]
    assert kinds(VolumeDetector(), group) == []


def test_learning_keeps_a_backup_server_and_a_sources_normal_out() -> None:
    d = VolumeDetector()
    d.learn([upload(0.0, 800 * MB, resp_h="10.0.0.50", resp_p=873),  # the nightly backup
             upload(5000.0, 300 * MB, uid="B", orig_h="10.0.0.7", resp_h="198.51.100.4")])
    assert kinds(d, [upload(90_000.0, 900 * MB, resp_h="10.0.0.50", resp_p=873)]) == []
    assert d.upload_limit("10.0.0.7") == d.upload_limit("10.0.0.7", one=True) == 600 * MB
    assert d.upload_limit("10.0.0.8", one=True) == 100 * MB  # no normal learned
    assert kinds(d, [upload(90_000.0, 550 * MB, uid="C", orig_h="10.0.0.7")]) == []
    assert kinds(d, [upload(99_000.0, 650 * MB, uid="D", orig_h="10.0.0.7")]) == [
        ("exfiltration", "high", 650 * MB)]


def snapshots(minutes: int, uid: str = "L", port: int = 4444) -> list[ConnRecord]:
    """A connection reported every minute while it stays open, as the tracker reports it."""
    return [record(ts=0.0, uid=uid, resp_h=CLOUD, resp_p=port, conn_state="S1",
                   duration=60.0 * m, orig_bytes=100 * m, resp_bytes=100 * m,
                   in_progress=True, ended="") for m in range(1, minutes + 1)]


def test_a_long_connection_is_raised_while_open_at_1_h_and_again_at_8_h() -> None:
    d = BehaviourDetectors()
    alerts = [a for r in snapshots(600) for a in d.update([r], now=r.ts + (r.duration or 0))]
    assert [(a.kind, a.severity, a.count) for a in alerts] == [
        ("long_connection", "low", 3600), ("long_connection", "medium", 28800)]
    assert "(one still open)" in alerts[0].why and f"{CLOUD}:4444" in alerts[0].why


def test_a_service_held_long_in_normal_traffic_is_left_out() -> None:
    d = BehaviourDetectors()
    d.learn(snapshots(120, uid="M", port=8883))  # an IoT device's MQTT session
    quiet = [a for r in snapshots(600, port=8883) for a in d.update([r], now=0.0)]
    assert quiet == []
    assert [a.kind for r in snapshots(90) for a in d.update([r], now=0.0)] == [
        "long_connection"]


def capture_upload(path: Path, size: int) -> None:
    """``size`` bytes sent over a real TCP connection on loopback, captured by tcpdump
    (headers only)."""
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    dump = subprocess.Popen(["tcpdump", "-i", "lo", "-s", "128", "-U", "-w", str(path),
                             f"tcp port {port}"], stderr=subprocess.PIPE)
    try:
        time.sleep(1.0)  # tcpdump is listening

        def drain() -> None:
            conn, _ = server.accept()
            with conn:
                while conn.recv(1 << 20):
                    pass
                conn.sendall(b"ok")

        reader = threading.Thread(target=drain)
        reader.start()
        with socket.create_connection(("127.0.0.1", port)) as client:
            block = b"x" * (1 << 20)
            for _ in range(size // len(block)):
                client.sendall(block)
            client.shutdown(socket.SHUT_WR)
            client.recv(16)
        reader.join(timeout=30)
        time.sleep(1.0)  # the last packets reach the file
    finally:
        dump.terminate()
        dump.wait(timeout=10)
        server.close()


@pytest.mark.skipif(shutil.which("tcpdump") is None, reason="needs tcpdump (setup.sh --dev)")
def test_a_real_upload_over_a_socket_is_an_exfiltration_alert(tmp_path: Path) -> None:
    path = tmp_path / "upload.pcap"
    capture_upload(path, 150 * (1 << 20))
    tracker, detectors = ConnTracker(), BehaviourDetectors()
    alerts = []
    for frames in [*read_batches(path, 4096), None]:
        records = tracker.update(decode(frames)) if frames is not None else tracker.flush()
        alerts += detectors.update(records, now=tracker.now)
    (alert,) = alerts
    assert (alert.kind, alert.severity, alert.source) == ("exfiltration", "medium", "127.0.0.1")
    assert alert.count >= 150 * (1 << 20)
    assert "producer/consumer ratio 1.00" in alert.why
