"""Analysing a file shows how far it is (NiceGUI ``user`` fixture, the real app, the bundled
sample): a bar and the packets, share, rate and time left, like ``score`` on a terminal."""

from __future__ import annotations

import re
import time

from nicegui.testing import User

from tests.support import (  # noqa: F401 - app_paths is an autouse fixture
    SAMPLE,
    app_paths,
    controller_of_app,
    until,
)


def progress_text(user: User) -> str:
    """The text beside the bar; '' while it is hidden (the user sees no such element)."""
    try:
        return user.find(marker="file-progress-text").elements.pop().text
    except AssertionError:
        return ""


def progress_value(user: User) -> float:
    box = user.find(marker="file-progress").elements.pop()
    return float(box.default_slot.children[0].value)


async def test_a_file_played_back_shows_packets_share_rate_and_time_left(user: User) -> None:
    await user.open("/")
    user.find(marker="realtime").click()
    user.find(marker="pcap-path").type(SAMPLE.name)
    user.find(marker="analyse").click()
    c = controller_of_app()
    # the 30 s sample is paced in real time: after a few seconds it is part way, with an estimate
    await until(lambda: "left" in progress_text(user), 15, "a time-left estimate")
    first = progress_value(user)
    text = progress_text(user)
    assert re.search(r"^[\d,]+ packets · \d+% · [\d,]+ packets/s · .+ left$", text), text
    assert 0.0 < first < 1.0
    await until(lambda: progress_value(user) > first, 10, "the bar to move on")
    assert c.live.running
    await c.stop()


async def test_a_finished_file_says_done_at_full_share(user: User) -> None:
    await user.open("/")
    await user.should_not_see(marker="file-progress-text")  # hidden until a file is analysed
    user.find(marker="pcap-path").type(SAMPLE.name)
    user.find(marker="analyse").click()
    c = controller_of_app()
    await until(lambda: c.live.source == SAMPLE.name and not c.live.running, 60, "the analysis")
    await until(lambda: progress_text(user).startswith("Done · "), 5, "the finished bar")
    assert f"{c.live.packets:,} packets · 100%" in progress_text(user)
    assert progress_value(user) == 1.0


async def test_the_packets_per_second_card_follows_the_last_second(user: User) -> None:
    """Issue #18: the card froze at the session's average; it shows the last second's rate,
    so it changes while a recording plays back at its own pace."""
    await user.open("/")
    user.find(marker="realtime").click()
    user.find(marker="pcap-path").type(SAMPLE.name)
    user.find(marker="analyse").click()
    c = controller_of_app()

    def shown() -> str:
        return user.find(marker="count-rate").elements.pop().text

    started = time.monotonic()
    await until(lambda: any(ch.isdigit() for ch in shown()), 20, "a packet rate")
    seen = {shown()}
    await until(lambda: seen.add(shown()) or len(seen) >= 3, 20, "the rate to change")

    def rate() -> int:
        digits = shown().replace(",", "")
        return int(digits) if digits.isdigit() else 0

    # the sample's SYN flood: the last second runs far above the session's average so far
    await until(lambda: rate() > 2 * c.live.packets / (time.monotonic() - started), 40,
                "the flood's rate, above the session average")
    assert c.live.running  # all while one session runs
    await c.stop()
