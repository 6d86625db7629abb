"""Training data that is not normal IP traffic: refused when there is essentially none (802.11,
ARP only), trained on with a warning naming the doubt when it is thin or looks like attacks."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from netids.capture.pcapfile import write_pcap
from netids.config import PROJECT_ROOT
from netids.training.checkpoint import load
from netids.training.data import check_training_data, read_capture
from netids.training.retrain import describe
from netids.training.train import TrainConfig, TrainingError, TrainReport, train
from tests.support import model_for_tests

APP = str(PROJECT_ROOT / "app.py")
BEACON = bytes.fromhex("80000000ffffffffffff020000000001020000000001") + bytes(40)


def wifi_capture(path: Path, packets: int = 8200) -> Path:
    """Enough 802.11 frames to pass the packet minimum, and no IP at all."""
    write_pcap(path, ((1_700_000_000 + i / 100, BEACON) for i in range(packets)), linktype=105)
    return path


def test_captures_without_ip_traffic_are_refused_and_say_what_they_hold(
        shared_data: Path) -> None:
    wifi = check_training_data(read_capture(shared_data / "other" / "3e80211_wpaauth.pcapng")[0])
    assert wifi.refusal is not None and wifi.refusal.startswith("only 0 of 12 packets are IP")
    assert "12 of a link type netids does not decode, such as 802.11" in wifi.refusal
    arp = check_training_data(read_capture(shared_data / "attack"
                                           / "slips__test8-malicious.pcap")[0])
    assert arp.refusal is not None and "(519 ARP" in arp.refusal


def test_the_trainer_itself_refuses_them(tmp_path: Path) -> None:
    """The training page calls ``train`` directly: the refusal is there, not only in the CLI."""
    packets, features = read_capture(wifi_capture(tmp_path / "wifi.pcap"))
    with pytest.raises(TrainingError, match="only 0 of 8,200 packets are IP traffic"):
        train([(packets, features)], TrainConfig(epochs=1))


@pytest.mark.parametrize("name", ["iotlab__blink-cam-01.pcap", "zeek__modbusBig.pcap",
                                  "zeek__ssh.pcap", "sanders__http_espn.pcapng"])
def test_normal_captures_pass_without_a_word(shared_data: Path, name: str) -> None:
    check = check_training_data(read_capture(shared_data / "benign" / name)[0])
    assert check.refusal is None and check.warnings == []


@pytest.mark.parametrize("name, doubts", [
    ("stopddos__pkt.TCP.synflood.spoofed.pcap", ["unanswered", "no ACK"]),
    ("stopddos__amp.UDP.isakmp.pcap", ["unanswered"]),
    ("evilfingers__TCP_CONNECT_SCAN.pcap", ["only 2 IP addresses", "unanswered", "no ACK"]),
    ("zeek__sshguess.pcap", ["only 2 IP addresses"]),
])
def test_attack_only_captures_are_doubted_by_name(shared_data: Path, name: str,
                                                  doubts: list[str]) -> None:
    check = check_training_data(read_capture(shared_data / "attack" / name)[0])
    assert check.refusal is None
    assert len(check.warnings) == len(doubts)
    for doubt, warning in zip(doubts, check.warnings, strict=True):
        assert doubt in warning


def test_train_command_warns_on_a_flood_and_still_trains(tmp_path: Path,
                                                         shared_data: Path) -> None:
    capture = shared_data / "attack" / "stopddos__pkt.TCP.synflood.spoofed.pcap"
    out = tmp_path / "flood.pt"
    done = subprocess.run([sys.executable, APP, "train", str(capture), "--out", str(out),
                           "--part", "0:0.25", "--epochs", "1"],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    warnings = done.stderr.strip().splitlines()
    assert [w.split(":")[0] for w in warnings] == ["warning", "warning"]
    assert "100% of the IP packets are unanswered" in warnings[0]
    assert "100% of the TCP packets carry no ACK" in warnings[1]
    saved = torch.load(out, weights_only=True)["metadata"]["data_warnings"]
    assert saved == [w.removeprefix("warning: ") for w in warnings]


def test_the_training_page_report_carries_the_doubts() -> None:
    """The Training page shows :func:`describe`: a doubt is read there, not only on stderr."""
    report = TrainReport(checkpoint=load(model_for_tests()), epochs=1, best_epoch=1,
                         warnings=["only 2 IP addresses in the data"])
    assert describe(report).endswith("; warning: only 2 IP addresses in the data")
    assert "warning" not in describe(TrainReport(checkpoint=report.checkpoint, epochs=1,
                                                 best_epoch=1))
