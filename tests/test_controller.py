"""The controller runs a capture file through the live pipeline, stores events, publishes state."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path

import pytest
from sqlmodel import Session, select

from netids.capture.pcapfile import read_batches
from netids.config import CaptureSettings, Settings
from netids.controller import Controller
from netids.lab.throughput import replay, write_udp_burst
from netids.live import LiveState, overload_text
from netids.store.engine import make_engine
from netids.store.tables import Event
from netids.training.retrain import TrainingError
from netids.training.train import TrainConfig
from tests.support import SAMPLE


@pytest.fixture
def controller(tmp_path: Path, trained_model: Path) -> Controller:
    settings = replace(Settings(), db_url=f"sqlite:///{tmp_path / 'c.sqlite'}",
                       model_path=trained_model)
    c = Controller(settings)
    c.open()
    return c


async def test_a_file_runs_through_the_pipeline_into_the_database(controller: Controller) -> None:
    await controller.start_file(SAMPLE)
    await controller.wait()
    live = controller.live
    assert not live.running and live.error == ""
    assert live.packets == sum(len(b) for b in read_batches(SAMPLE))
    assert live.tcp + live.udp + live.other == live.packets
    assert sum(live.timeline.packets) == live.packets
    assert live.anomalies > 0 and len(live.events) > 0
    url = controller.settings.db_url
    await controller.close()
    with Session(make_engine(url)) as session:
        stored = session.exec(select(Event)).all()
    assert {e.id for e in stored} == {u.id for u in live.events}


async def test_the_bounded_tables_are_published_with_size_and_evictions(
        controller: Controller) -> None:
    await controller.start_file(SAMPLE)
    await controller.wait()
    tables = {t.name: t for t in controller.live.tables}
    assert {"src", "dst", "pair", "sock", "sources per target", "open events"} <= set(tables)
    assert all(0 <= t.size <= t.capacity and t.evicted >= 0 for t in tables.values())
    assert tables["src"].size > 0  # the event fans are emptied when the stream ends
    await controller.close()


async def test_the_events_counter_counts_this_session_only(controller: Controller) -> None:
    await controller.start_file(SAMPLE)
    await controller.wait()
    first = controller.live.session_events
    assert first == len({u.id for u in controller.live.events}) > 0
    await controller.start_file(SAMPLE)  # the same file again: as many events, new ones
    await controller.wait()
    assert controller.live.session_events == first
    assert len({u.id for u in controller.live.events}) == 2 * first  # the table keeps both
    await controller.close()


async def test_threshold_applies_to_the_next_batches(controller: Controller) -> None:
    controller.set_threshold(1.0)
    await controller.start_file(SAMPLE)
    await controller.wait()
    assert controller.live.anomalies == 0
    with pytest.raises(ValueError):
        controller.set_threshold(1.5)
    await controller.close()


async def test_a_bad_file_is_reported_in_plain_words(controller: Controller,
                                                     tmp_path: Path) -> None:
    bad = tmp_path / "notes.pcap"
    bad.write_text("just some text")
    await controller.start_file(bad)
    await controller.wait()
    assert "not a pcap or pcapng file" in controller.live.error
    await controller.close()


async def test_a_broken_model_keeps_the_previous_one(controller: Controller,
                                                     tmp_path: Path) -> None:
    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"garbage")
    before = controller.detector
    assert controller.load_model(broken) is False
    assert controller.detector is before and controller.model_error
    await controller.close()


@pytest.fixture
def trainable(tmp_path: Path, trained_model: Path) -> Controller:
    settings = replace(Settings(), db_url=f"sqlite:///{tmp_path / 't.sqlite'}",
                       model_path=trained_model, models_dir=tmp_path / "models")
    c = Controller(settings)
    c.open()
    return c


async def test_capture_and_retrain_activates_the_new_model_and_rolls_back(
        trainable: Controller, shared_data: Path) -> None:
    normal = shared_data / "benign" / "iotlab__schlage-lock-01.pcap"
    await trainable.start_training_file(normal)
    assert trainable.training.phase == "capturing"
    assert await trainable.stop_and_train("lab-1", TrainConfig(epochs=2, max_train_windows=400))
    state = trainable.training
    if state.phase == "review":  # two epochs leave concerns (validation loss): accept them
        assert state.concerns and await trainable.accept_trained()
    assert state.phase == "done" and state.error == "" and state.packets == 11150
    assert [epoch for epoch, _, _ in state.history] == [1, 2]
    assert "validation loss" in state.report and "false-alarm rate" in state.report
    assert (trainable.settings.models_dir / "lab-1.pt").is_file()
    versions = {v.name: v.active for v in trainable.model_versions()}
    assert versions == {"default": False, "lab-1": True}
    assert await trainable.activate_model("default")
    assert {v.name: v.active for v in trainable.model_versions()}["default"] is True
    await trainable.close()


async def test_failed_training_keeps_the_previous_model(trainable: Controller,
                                                        shared_data: Path) -> None:
    before = trainable.detector
    await trainable.start_training_file(shared_data / "benign" / "zeek__wikipedia.pcap")
    assert not await trainable.stop_and_train("too-small")
    assert trainable.training.phase == "failed"
    assert "too little normal traffic" in trainable.training.error
    assert trainable.detector is before
    assert [v.name for v in trainable.model_versions()] == ["default"]
    with pytest.raises(TrainingError):
        await trainable.stop_and_train("again")
    await trainable.close()


# -- overload: a flood faster than the pipeline, through a real veth pair -----------------------

FLOOD_PORT = 47120
# deliberately slow: tiny batches (the model's fixed cost per call dominates) and a short queue
SLOW = CaptureSettings(batch_size=128, batch_timeout=0.05, queue_batches=4, shed_backlog=2,
                       merge_batches=1)


async def flood(lab_net, tmp_path: Path, model: Path, capture: CaptureSettings
                ) -> tuple[int, LiveState, list[float]]:
    """tcpreplay 100k UDP datagrams at 50k/s from lab host a to b, where a controller with
    ``capture`` settings monitors; (sent, the final live state, scored shares seen)."""
    pcap = tmp_path / "flood.pcap"
    write_udp_burst(pcap, 50_000, lab_net.hosts["a"], lab_net.hosts["b"], FLOOD_PORT)
    c = Controller(replace(Settings(), db_url=f"sqlite:///{tmp_path / 'flood.sqlite'}",
                           model_path=model, capture=capture))
    c.open()
    shares: list[float] = []
    try:
        await c.start_live("eth0", f"udp dst port {FLOOD_PORT}", netns=lab_net.hosts["b"].ns)
        replaying = asyncio.create_task(
            asyncio.to_thread(replay, lab_net, "a", pcap, 50_000, 2))
        while not replaying.done():
            shares.append(c.live.scored_share)
            await asyncio.sleep(0.02)
        sent, _ = await replaying
        await asyncio.sleep(0.5)  # the last frames reach the ring
        await c.stop()
    finally:
        await c.close()
    return sent, c.live, shares


async def test_an_overloaded_pipeline_scores_a_sample_and_counts_every_packet(
        lab_net, tmp_path: Path, trained_model: Path) -> None:
    sent, live, shares = await flood(lab_net, tmp_path, trained_model, SLOW)
    assert sent == 100_000
    # nothing lost uncounted: every datagram sent was scored, shed or counted as a drop
    assert live.packets + live.kernel_drops + live.queue_drops == sent
    # shed packets are decoded and counted by protocol too, unless the overload was so deep
    # that they were only counted
    assert live.udp + live.unread == live.packets and live.unread <= live.shed
    assert live.shed > 0 and live.packets - live.shed > 0  # a sample was scored
    assert min(shares) < 1.0  # the scored share went down while it was overloaded
    assert overload_text(live).startswith(f"overload: {live.shed:,} packets were counted, not")


async def test_without_load_shedding_an_overloaded_pipeline_counts_its_drops(
        lab_net, tmp_path: Path, trained_model: Path) -> None:
    sent, live, shares = await flood(lab_net, tmp_path, trained_model,
                                     replace(SLOW, shed_load=False))
    assert sent == 100_000
    assert live.shed == 0 and set(shares) == {1.0}
    assert live.queue_drops + live.kernel_drops > 0  # whole batches dropped, and counted
    assert live.packets + live.kernel_drops + live.queue_drops == sent
