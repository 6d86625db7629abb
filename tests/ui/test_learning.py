"""Learning the network in place, end to end: the real app with the shipped model and no model
trained here starts learning on its first live capture of a veth the test makes, shows its
progress in headless Chromium, alerts only network-independent kinds while it learns (a SYN
scan replayed over a Modbus network's traffic), trains in a child process, and the model it
made is remembered, so the next start does not learn again."""

from __future__ import annotations

import asyncio
import sys
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from nicegui.testing import Screen, User
from selenium.webdriver.common.by import By
from sqlmodel import Session, select

from netids.config import DEFAULT_MODEL, Settings
from netids.controller import Controller
from netids.store.engine import make_engine
from netids.store.tables import Event
from netids.training.in_place import ALERTED_KINDS, BEHAVIOUR_ALERTED
from tests.support import (  # noqa: F401 - app_paths is an autouse fixture
    AppPaths,
    Veth,
    app_paths,
    controller_of_app,
    until,
    veth_pair,
    wait_until,
)

NS, HOST_END, NS_END = "nidlearn", "nidlrn0", "nidlrn1"


@pytest.fixture
def veth() -> Iterator[Veth]:
    with veth_pair(NS, HOST_END, NS_END) as pair:
        yield pair


def on_app_loop(coro) -> object:
    from nicegui import core

    return asyncio.run_coroutine_threadsafe(coro, core.loop).result(30)


def shown(screen: Screen, words: str) -> str:
    """The text of the element showing ``words`` in the browser, '' when none does."""
    found = screen.selenium.find_elements(By.XPATH, f'//*[contains(text(), "{words}")]')
    return found[0].text if found else ""


def test_the_first_live_capture_learns_the_network_then_the_learned_model_is_kept(
        veth: Veth, screen: Screen, app_paths: AppPaths, shared_data: Path,  # noqa: F811
        monkeypatch: pytest.MonkeyPatch) -> None:
    argv = [a for a in sys.argv if a != "--no-learn"]
    monkeypatch.setattr(sys, "argv", [*argv, "--learn-minutes", "0.2", "--learn-epochs", "1"])
    # the test's veth pair takes its addresses (IPv6 duplicate detection) around the page's
    # load; Chromium drops a request in flight when its host's network changes
    screen.allowed_js_errors.append("net::ERR_NETWORK_CHANGED")
    screen.selenium.set_window_size(1280, 1000)
    screen.open("/", timeout=20)
    c = controller_of_app()
    assert c.learning.phase == "off"
    on_app_loop(c.start_live(veth.host_end))
    assert c.learning.phase == "learning"
    normal = veth.replay(shared_data / "benign" / "zeek__modbusBig.pcap", 4)
    threading.Timer(3.0, lambda: veth.replay(
        shared_data / "attack" / "evilfingers__TCP_SYN_SCAN.pcap", 1)).start()
    try:
        wait_until(lambda: c.learning.held and c.learning.packets > 3000, 20, "held flags")
        wait_until(lambda: shown(screen, "Learning this network: "), 10, "the banner")
        progress = shown(screen, "Learning this network: ")
        assert progress.startswith("Learning this network: ") and " of 12 s, " in progress
        assert " packets, " in progress and " hosts" in progress
        wait_until(lambda: shown(screen, "held back until the network is learned: "), 10,
                   "the held kinds shown")
        screen.shot("learning", failed=False)
        wait_until(lambda: c.learning.phase != "learning", 40, "learning to end")
    finally:
        normal.wait(60)
    with Session(make_engine(app_paths.db_url)) as session:
        kinds = {e.kind for e in session.exec(select(Event)).all()}
    assert "port scan" in kinds and kinds <= ALERTED_KINDS | BEHAVIOUR_ALERTED, kinds
    wait_until(lambda: c.learning.phase in ("review", "done", "failed"), 240, "training")
    assert c.learning.phase != "failed", c.training.error
    if c.learning.phase == "review":  # a 12 s capture: too little to trust without asking
        screen.should_contain("may be unreliable")
        screen.click("Activate anyway")
    wait_until(lambda: c.learning.phase == "done", 30, "the learned model to be active")
    screen.should_contain("Learned this network: model learned-")
    name = c.training.model
    assert (app_paths.models_dir / f"{name}.pt").is_file()
    on_app_loop(c.stop())
    again = asyncio.run(_next_start(app_paths))
    assert again == ("off", name)


async def _next_start(paths: AppPaths) -> tuple[str, str]:
    """A new app on the same database and models: what it learns and which model is active."""
    c = Controller(replace(Settings(), db_url=paths.db_url, model_path=DEFAULT_MODEL,
                           models_dir=paths.models_dir))
    c.open()
    try:
        await c.start_live("lo", "udp port 9")
        active = next(Path(v.path).stem for v in c.model_versions() if v.active)
        return c.learning.phase, active
    finally:
        await c.close()


@pytest.fixture
def learning_on(app_paths: AppPaths, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    """The app's command line without --no-learn (before ``user`` runs app.py)."""
    monkeypatch.setattr(sys, "argv", [a for a in sys.argv if a != "--no-learn"])


async def test_train_now_then_skip_learning_from_the_card(
        learning_on: None, veth: Veth, user: User, shared_data: Path) -> None:
    """A person presses *Train now* once enough is kept, then changes their mind: *Skip
    learning* cancels the training, every kind is alerted, and the next capture of this
    session does not learn."""
    await user.open("/")
    c = controller_of_app()
    await c.start_live(veth.host_end, "tcp")
    assert c.learning.phase == "learning"
    await user.should_see("Learning this network: ", retries=20)
    train_now = user.find(marker="learning-train-now").elements.pop()
    assert not train_now.enabled  # nothing kept yet
    replay = veth.replay(shared_data / "benign" / "zeek__modbusBig.pcap", 4)
    try:
        await until(c.can_train_learned, 60, "enough packets kept to train now")
        await until(lambda: train_now.enabled, 5, "Train now enabled")
        user.find(marker="learning-train-now").click()
        await user.should_see("Learning this network: training on what it saw", retries=20)
        assert c.learning.phase == "training"
        user.find(marker="learning-skip").click()
        await user.should_see("learning skipped: every kind is alerted", retries=20)
        await until(lambda: c.training.phase == "failed", 30, "the training to be cancelled")
        assert c.training.error == "training cancelled"
        assert c.learning.phase == "skipped" and not c.learning.holding  # the skip stands
        assert not list(c.settings.models_dir.glob("learned-*.pt"))
    finally:
        replay.wait(60)
    await c.stop()
    await c.start_live(veth.host_end, "tcp")
    assert c.learning.phase == "skipped"  # not learning again until the next start
    await c.stop()
