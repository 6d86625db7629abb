"""Progress bars of ``score``, ``train`` and ``evaluate``: drawn on a terminal (a real
pseudo-terminal around a real subprocess), absent when piped or under ``CI=true``."""

from __future__ import annotations

import fcntl
import io
import os
import re
import struct
import subprocess
import sys
import termios
from pathlib import Path

from netids.capture.files import FileProgress
from netids.commands import score as score_command
from netids.config import PROJECT_ROOT
from netids.detect.frames import FrameBatch
from netids.detect.pipeline import Pipeline
from netids.training.checkpoint import load_detector

APP = str(PROJECT_ROOT / "app.py")
FLOOD = "attack/stopddos__pkt.TCP.synflood.spoofed.pcap"  # 37,841 packets: a few seconds
BAR = re.compile(r"\r(\w+) \[[# ]+\] ([\d,/]+) (\w+) · (\d+)% · ([^\r\x1b]*)\x1b\[K")


def on_terminal(*args: str | Path, env: dict[str, str] | None = None) -> tuple[int, str]:
    """Run ``app.py ARGS`` with stderr on a 120-column pseudo-terminal: (exit status, what
    the terminal received)."""
    leader, follower = os.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    environ = {k: v for k, v in os.environ.items() if k != "CI"} | (env or {})
    proc = subprocess.Popen([sys.executable, APP, *map(str, args)], stdout=subprocess.DEVNULL,
                            stderr=follower, stdin=subprocess.DEVNULL, env=environ)
    os.close(follower)
    received = b""
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the follower side closed: the process is gone
            break
        if not chunk:
            break
        received += chunk
    os.close(leader)
    return proc.wait(timeout=300), received.decode()


def test_score_on_a_terminal_shows_packets_share_rate_and_time_left(
        tmp_path: Path, shared_data: Path) -> None:
    status, screen = on_terminal("score", shared_data / FLOOD, "--out", tmp_path / "s.csv",
                                 "--batch-size", "1024", "--workers", "1")
    assert status == 0, screen
    bars = BAR.findall(screen)
    # at most 4 draws a second: a quiet machine scores this capture in half a second, so
    # two draws are all a run can promise (the time-left words: tests/capture/test_progress)
    assert len(bars) >= 2, screen
    assert {label for label, *_ in bars} == {"scoring"}
    packets = [int(n.replace(",", "")) for _, n, *_ in bars]
    shares = [int(share) for *_, share, _ in bars]
    assert packets == sorted(packets) and shares == sorted(shares) and shares[-1] > 50
    assert all(re.search(r"[\d,]+ packets/s( · .+ left)?$", rest) for *_, rest in bars)
    # the bar is wiped before the summary, which stays as it always was
    assert re.search(r"\r\x1b\[K37841 packets scored in", screen)


def test_score_counts_packets_once_their_rows_are_written(
        shared_data: Path, trained_model: Path) -> None:
    """Workers judge batches ahead of the writer: progress follows the rows written."""
    capture = shared_data / FLOOD
    pipeline = Pipeline(load_detector(trained_model))
    progress = FileProgress([capture])
    count = progress.counter(capture)
    out = io.StringIO()
    seen: list[tuple[int, int]] = []

    def done(frames: FrameBatch) -> None:
        count(frames)
        seen.append((progress.snapshot().count, out.getvalue().count("\n") - 1))

    with score_command.scoring_pool(pipeline, 1) as pool:
        assert score_command.score_file(capture, out, pipeline, pool, None, 1024, done) is None
    assert len(seen) >= 30
    assert all(counted == rows for counted, rows in seen)
    assert seen[-1][0] == 37841
    # a pcap's bytes are its 24-byte header and each packet with its 16-byte record header
    assert progress.meter.work + 24 == capture.stat().st_size


def test_score_piped_or_under_ci_prints_no_bar(tmp_path: Path, shared_data: Path) -> None:
    piped = subprocess.run([sys.executable, APP, "score", shared_data / FLOOD, "--out",
                            tmp_path / "p.csv"], capture_output=True, text=True, timeout=300)
    assert piped.returncode == 0
    assert piped.stderr.count("\n") == 2 and "\r" not in piped.stderr  # summary, state
    assert piped.stderr.startswith("37841 packets scored in")
    status, screen = on_terminal("score", shared_data / FLOOD, "--out", tmp_path / "c.csv",
                                 env={"CI": "true"})
    assert status == 0
    assert "\r" not in screen.replace("\r\n", "\n") and not BAR.search(screen)


def test_evaluate_and_train_show_their_bars(tmp_path: Path, shared_data: Path) -> None:
    labels = shared_data / FLOOD.replace(".pcap", ".labels.csv")
    status, screen = on_terminal("evaluate", shared_data / FLOOD, "--labels", labels,
                                 "--no-baselines")
    assert status == 0, screen
    assert {label for label, *_ in BAR.findall(screen)} == {"judging"}
    normal = shared_data / "benign" / "zeek__cwd-navigation.pcap"  # 8,317 packets
    status, screen = on_terminal("train", normal, "--epochs", "1", "--out", tmp_path / "m.pt")
    assert status == 0, screen
    bars = BAR.findall(screen)
    assert {label for label, *_ in bars} == {"reading", "training"}
    assert bars[-1][:3] == ("training", "1/1", "epochs")
