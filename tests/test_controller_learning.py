"""Learning the network in place through the controller, on live captures of a veth the test
makes (a Modbus network's traffic replayed into it) or of loopback: training by the clock on a
quiet network, *Train now*, activation without review when nothing looks wrong, stopping the
capture while learning, and a learned model remembered with no database at all, with what
the behaviour detectors learned; a model held for review, or trained on the training page,
teaches them too once it is active."""

from __future__ import annotations

import asyncio
import math
import subprocess
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from netids.config import LearnSettings, Settings
from netids.controller import Controller
from netids.training.kept import model_digest
from netids.training.quality import Limits
from netids.training.train import TrainConfig
from tests.support import Veth, until, veth_pair

MODBUS = "benign/zeek__modbusBig.pcap"  # 13,622 packets over 58 s, Modbus/TCP polling
# nothing asks for review: the activation path a model with no concerns takes
TRUSTING = Limits(min_packets=0, min_seconds=0.0, min_hosts=0, max_protocol_share=math.inf,
                  max_val_loss=math.inf, max_val_over_train=math.inf, min_tail_packets=0.0)
DOUBTING = replace(TRUSTING, min_packets=10**9)  # every model is held for a person's review


@pytest.fixture
def veth() -> Iterator[Veth]:
    with veth_pair("nidruns", "nidrun0", "nidrun1") as pair:
        yield pair


def controller(tmp_path: Path, trained_model: Path, seconds: float, *, db: bool = True,
               quality: Limits | None = None) -> Controller:
    """A controller as `python app.py --learn-minutes ... --learn-epochs 1` makes it, with the
    shipped model; ``db=False``: its database cannot be opened (a file stands in its folder)."""
    (tmp_path / "not-a-folder").touch()
    url = f"sqlite:///{tmp_path / 'c.sqlite'}" if db else \
        f"sqlite:///{tmp_path / 'not-a-folder' / 'c.sqlite'}"
    settings = replace(Settings(), db_url=url, model_path=trained_model,
                       models_dir=tmp_path / "models",
                       learn=LearnSettings(seconds=seconds, epochs=1, shipped=trained_model))
    (tmp_path / "models").mkdir(exist_ok=True)
    c = Controller(settings, quality)
    c.open()
    assert c.has_database() is db
    return c


async def learn_now(c: Controller, veth: Veth, shared_data: Path) -> subprocess.Popen:
    """Start learning on the veth, replay the Modbus network into it, and press *Train now*
    as soon as enough is kept (minutes early); return once training ended, with the replay."""
    await c.start_live(veth.host_end, "tcp")
    assert c.learning.phase == "learning"
    assert not c.can_train_learned() and not c.train_learned_now()  # nothing kept yet
    replay = veth.replay(shared_data / MODBUS, 4)
    await until(c.can_train_learned, 60, "enough packets kept to train now")
    assert c.train_learned_now()
    await until(lambda: c.learning.phase in ("done", "review", "failed"), 240, "training")
    return replay


def taught(c: Controller) -> bool:
    """The running capture's behaviour detectors learned this network's normal."""
    detectors = c._sink.behaviour.detectors
    return detectors.scans.learned and detectors.volume.learned and detectors.beacons.learned


async def test_on_a_quiet_network_learning_trains_when_its_time_is_up_and_activates(
        veth: Veth, tmp_path: Path, trained_model: Path, shared_data: Path) -> None:
    c = controller(tmp_path, trained_model, 30.0, quality=TRUSTING)
    try:
        await c.start_live(veth.host_end, "tcp")  # nothing else arrives once the replay ends
        assert c.learning.phase == "learning"
        replay = veth.replay(shared_data / MODBUS, 4)  # about 15 s, then silence
        await until(lambda: replay.poll() is not None, 60, "the replay")
        await until(lambda: c.learning.kept >= 8000, 10, "enough packets kept")
        seen = -1
        while c.learning.packets != seen:  # the replay's last packets drain from the ring
            seen = c.learning.packets
            await asyncio.sleep(1.5)
        assert c.learning.phase == "learning", "the time ran out before the replay ended"
        await until(lambda: c.learning.phase != "learning", 15, "training to start by the clock")
        assert c.learning.packets == seen  # no packet came to ask
        await until(lambda: c.learning.phase in ("done", "review", "failed"), 240, "training")
        assert c.learning.phase == "done", (c.learning.phase, c.training.error)
        assert c.training.concerns == []  # so it was activated without asking
        active = [v for v in c.model_versions() if v.active]
        assert [v.name for v in active] == [c.training.model]
        assert active[0].name.startswith("learned-")
        assert c.live.message == f"model {active[0].name}.pt active"
        # the behaviour detectors learned from the same traffic: its failed connections,
        # beacons, uploads and long sessions are this network's normal from now on
        assert taught(c)
    finally:
        await c.close()


async def test_train_now_trains_early_and_without_a_database_the_models_folder_remembers(
        veth: Veth, tmp_path: Path, trained_model: Path, shared_data: Path) -> None:
    c = controller(tmp_path, trained_model, 600.0, db=False, quality=TRUSTING)
    try:
        replay = await learn_now(c, veth, shared_data)
        assert c.learning.phase == "done", (c.learning.phase, c.training.error)
        learned = c.settings.models_dir / f"{c.training.model}.pt"
        assert learned.is_file()
        replay.wait(60)
    finally:
        await c.close()
    kept = c.settings.models_dir / "learned" / f"{model_digest(learned)}.json"
    assert kept.is_file() and kept.stat().st_mode & 0o777 == 0o600
    again = controller(tmp_path, trained_model, 600.0, db=False)  # the next start, no database
    try:
        assert again.live.message == f"model {learned.name} active"
        await again.start_live("lo", "udp port 9")
        assert again.learning.phase == "off"  # learned once, not learned again
        # and the behaviour detectors start from what it was learned from, not from nothing
        assert taught(again)
    finally:
        await again.close()


async def test_without_a_database_and_nothing_trained_here_the_next_start_learns_again(
        tmp_path: Path, trained_model: Path) -> None:
    c = controller(tmp_path, trained_model, 600.0, db=False)
    try:
        assert c.live.message == f"model {trained_model.name} active"
        await c.start_live("lo", "udp port 9")
        assert c.learning.phase == "learning"
    finally:
        await c.close()


async def test_stopping_the_capture_ends_learning_and_the_next_capture_starts_over(
        tmp_path: Path, trained_model: Path) -> None:
    c = controller(tmp_path, trained_model, 600.0)
    try:
        await c.start_live("lo", "udp port 9")
        first = c.learning
        assert first.phase == "learning" and not c.can_train_learned()
        await c.stop()
        assert first.phase == "stopped"
        assert first.message == ("learning stopped with the capture: it starts over with the "
                                 "next live capture")
        assert not c.learning.holding  # every kind is alerted again meanwhile
        await c.start_live("lo", "udp port 9")
        assert c.learning is not first and c.learning.phase == "learning"
        assert c.learning.packets == 0 and c.learning.started > first.started
    finally:
        await c.close()


async def test_a_learned_model_held_for_review_teaches_the_detectors_once_accepted(
        veth: Veth, tmp_path: Path, trained_model: Path, shared_data: Path) -> None:
    c = controller(tmp_path, trained_model, 600.0, quality=DOUBTING)
    try:
        replay = await learn_now(c, veth, shared_data)
        assert c.learning.phase == "review", (c.learning.phase, c.training.error)
        assert not taught(c)  # held back: the shipped model's defaults still
        assert await c.accept_trained()
        assert c.learning.phase == "done" and taught(c)
        replay.wait(60)
    finally:
        await c.close()


async def test_a_model_trained_on_the_training_page_teaches_the_detectors_of_later_captures(
        veth: Veth, tmp_path: Path, trained_model: Path, shared_data: Path) -> None:
    c = controller(tmp_path, trained_model, 600.0, quality=TRUSTING)
    try:
        await c.start_training_capture(veth.host_end, "tcp")
        replay = veth.replay(shared_data / MODBUS, 4)
        await until(lambda: c.training.packets >= 8000, 60, "enough packets to train on")
        replay.wait(60)
        assert await c.stop_and_train("page-1", TrainConfig(epochs=1, max_train_windows=400))
        assert c.training.phase == "done", (c.training.phase, c.training.error)
        trained = c.settings.models_dir / "page-1.pt"
        assert (c.settings.models_dir / "learned" / f"{model_digest(trained)}.json").is_file()
        await c.start_live("lo", "udp port 9")
        assert taught(c)
        assert await c.activate_model("default")  # rolled back: the shipped model taught nothing
        await c.start_live("lo", "udp port 9")
        assert not taught(c)
    finally:
        await c.close()
