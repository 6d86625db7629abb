"""The threshold adapter across restarts of the app: a live session continues from the state
kept for its model (restored from the first batch, kept again when it stops), a new model
starts fresh, a capture file is judged without it, and a damaged state file is ignored.
The state is a real adapter's, after the dev mix (40 min of packet time) went through it."""

from __future__ import annotations

import asyncio
import socket
from dataclasses import replace
from pathlib import Path

import pytest

from netids.capture.pcapfile import read_batches
from netids.config import LearnSettings, Settings
from netids.controller import Controller
from netids.detect.adaptive import AdapterState
from netids.detect.pipeline import Pipeline
from netids.training.checkpoint import load_detector, save
from netids.training.kept import SessionMemory, load_adapter, model_digest
from tests.support import SAMPLE, until

PORT = 47391  # the test's own UDP port on loopback


@pytest.fixture(scope="module")
def dev_mix_state(shared_data: Path, trained_model: Path) -> AdapterState:
    """The shipped model's adapter after the dev mix: it moved (x1.08 when measured)."""
    pipeline = Pipeline(load_detector(trained_model), adapt=True)
    for batch in read_batches(shared_data / "mixed_dev.pcap", 4096):
        pipeline.process(batch)
    assert pipeline.adapter is not None and pipeline.adapter.scale > 1.0
    return pipeline.adapter.state()


def app(tmp_path: Path, model: Path, db: str = "c.sqlite") -> Controller:
    c = Controller(replace(Settings(), db_url=f"sqlite:///{tmp_path / db}",
                           model_path=model, models_dir=tmp_path / "models",
                           learn=LearnSettings(enabled=False)))
    c.open()
    return c


async def live_packets(c: Controller) -> None:
    """Monitor loopback (the test's port only) and send it a few datagrams."""
    await c.start_live("lo", f"udp port {PORT}")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for _ in range(20):
            s.sendto(b"x" * 32, ("127.0.0.1", PORT))
            await asyncio.sleep(0.02)
    await until(lambda: c.live.packets > 0, 10, "the datagrams")


async def test_a_restart_continues_from_the_kept_state_and_a_new_model_starts_fresh(
        tmp_path: Path, trained_model: Path, dev_mix_state: AdapterState) -> None:
    models = tmp_path / "models"
    models.mkdir()
    SessionMemory(models, model_digest(trained_model)).keep(_adapter(dev_mix_state))
    c = app(tmp_path, trained_model)
    try:
        await live_packets(c)
        assert c.live.adapt_scale == pytest.approx(dev_mix_state.scale)  # from the first batch
        assert c.live.adapt_learned == dev_mix_state.learned
        await c.stop()
    finally:
        await c.close()
    kept = load_adapter(models, model_digest(trained_model))
    assert kept is not None and kept.scale == pytest.approx(dev_mix_state.scale)
    assert kept.learned == dev_mix_state.learned
    assert sum(map(len, kept.samples)) == sum(map(len, dev_mix_state.samples))

    retrained = load_detector(trained_model).checkpoint
    retrained.metadata["note"] = "another model"  # other bytes: another digest
    other = save(retrained, tmp_path / "other.pt")
    c = app(tmp_path, other, "other.sqlite")  # its database makes it the active model
    try:
        await live_packets(c)
        assert (c.live.adapt_scale, c.live.adapt_learned) == (1.0, 0)
    finally:
        await c.close()


async def test_a_capture_file_is_judged_without_the_kept_state(
        tmp_path: Path, trained_model: Path, dev_mix_state: AdapterState) -> None:
    models = tmp_path / "models"
    models.mkdir()
    SessionMemory(models, model_digest(trained_model)).keep(_adapter(dev_mix_state))
    c = app(tmp_path, trained_model)
    try:
        await c.start_file(SAMPLE)  # a recording may come from any network
        await c.wait()
        assert c.live.packets > 0 and c.live.adapt_scale == 1.0
    finally:
        await c.close()


async def test_a_damaged_state_file_is_ignored(tmp_path: Path, trained_model: Path,
                                               caplog: pytest.LogCaptureFixture) -> None:
    models = tmp_path / "models"
    (models / "adapted").mkdir(parents=True)
    (models / "adapted" / f"{model_digest(trained_model)}.npz").write_bytes(b"not numpy")
    c = app(tmp_path, trained_model)
    try:
        await live_packets(c)
        assert c.live.adapt_scale == 1.0 and c.live.running
    finally:
        await c.close()
    assert any("threshold adaptation not restored" in r.getMessage() and "unreadable"
               in r.getMessage() for r in caplog.records)


def _adapter(state: AdapterState):
    from netids.detect.adaptive import ThresholdAdapter

    adapter = ThresholdAdapter(anchor=1.0)
    adapter.restore(state)
    return adapter
