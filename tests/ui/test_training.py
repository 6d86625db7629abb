"""The training page (``user`` fixture): capture normal traffic from a file, stop & train with
a live loss curve and a final report, the new model active, roll back, and failures."""

from __future__ import annotations

from pathlib import Path

from nicegui.testing import User

from netids.training.checkpoint import read_metadata
from tests.support import (  # noqa: F401 - app_paths is an autouse fixture
    AppPaths,
    app_paths,
    controller_of_app,
    small_pcap,
    until,
)


async def capture_file(user: User, path: Path) -> None:
    user.find(marker="train-path").type(str(path))
    user.find(marker="train-use-file").click()
    c = controller_of_app()
    await until(lambda: c.training.phase == "capturing", 10, "capturing")
    await until(lambda: not c.live.running, 60, "the file to be read")


async def train_small(user: User, tmp_path: Path, name: str) -> None:
    """Read 10,000 packets of the sample (too little to trust) and train 2 epochs on them."""
    await capture_file(user, small_pcap(tmp_path / "normal.pcap", 10_000))  # >= 8,000 needed
    c = controller_of_app()
    await user.should_see("10,000", retries=20)
    assert c.training.packets == 10_000
    await user.should_see("Read 10,000 packets from normal.pcap: name the model and press Train.")
    user.find(marker="train-name").clear().type(name)
    user.find(marker="train-epochs").elements.pop().set_value(2)
    user.find(marker="train-go").click()
    await until(lambda: c.training.phase == "training", 10, "training to start")
    await until(lambda: c.training.phase in ("review", "done", "failed"), 180, "training to end")


async def test_a_model_trained_on_too_little_traffic_is_activated_only_when_accepted(
        user: User, app_paths: AppPaths, tmp_path: Path) -> None:  # noqa: F811
    await user.open("/training")
    original = app_paths.model.stem
    await user.should_see(f"active: {original}", retries=20)
    c = controller_of_app()
    before = c.detector
    await train_small(user, tmp_path, "office-week")
    assert c.training.phase == "review", c.training.error
    await user.should_see(marker="review-dialog", retries=20)
    for words in ("little traffic: trained on only 10,000 packets", "short capture",
                  "unstable calibration"):
        await user.should_see(words)
    assert c.detector is before, "not active before it is accepted"
    await user.should_see(f"active: {original}", retries=20)
    await user.should_see("validation loss", retries=20)
    await user.should_see("false-alarm rate")
    chart = user.find(marker="loss-chart").elements.pop().options
    assert chart["xAxis"]["data"] == [1, 2] and len(chart["series"][1]["data"]) == 2
    assert (app_paths.models_dir / "office-week.pt").is_file()
    await user.should_see(marker="concerns-office-week", retries=20)  # its card warns too
    user.find(marker="review-activate").click()
    await user.should_see("active: office-week", retries=20)
    assert c.detector is not before and c.training.phase == "done"
    await user.should_see(marker=f"version-{original}")
    user.find(marker=f"activate-{original}").click()  # roll back
    await user.should_see(f"active: {original}", retries=20)
    await user.should_see(f"Model {original} is active.")
    user.find(marker="activate-office-week").click()
    await user.should_see("active: office-week", retries=20)


async def test_keeping_the_current_model_leaves_the_new_one_listed_inactive(
        user: User, app_paths: AppPaths, tmp_path: Path) -> None:  # noqa: F811
    await user.open("/training")
    c = controller_of_app()
    before = c.detector
    await train_small(user, tmp_path, "doubtful")
    await user.should_see(marker="review-dialog", retries=20)
    user.find(marker="review-keep").click()
    await user.should_see("Trained, not activated: the previous model stays active", retries=20)
    assert c.detector is before and c.training.phase == "declined"
    await user.should_see(f"active: {app_paths.model.stem}", retries=20)
    await user.should_see(marker="activate-doubtful", retries=20)


async def test_the_shipped_model_card_shows_its_training_and_validation_figures(
        user: User, app_paths: AppPaths) -> None:  # noqa: F811
    meta = read_metadata(app_paths.model)
    await user.open("/training")
    card = f"card-{app_paths.model.stem}"
    await user.should_see(marker=card, retries=20)
    text = user.find(marker=card).elements.pop().text
    assert f"on {meta['packets']:,} packets" in text
    assert f"trained {meta['created'][:10]}" in text
    assert f"validation loss {meta['metrics']['best_val_loss']:.4f}" in text
    assert f"{meta['metrics']['calibration_packets']:,} held-back packets" in text


async def test_a_failed_training_keeps_the_previous_model_and_says_why(
        user: User, app_paths: AppPaths, tmp_path: Path) -> None:  # noqa: F811
    await user.open("/training")
    await capture_file(user, small_pcap(tmp_path / "short.pcap", 2000))
    c = controller_of_app()
    before = c.detector
    user.find(marker="train-name").clear().type("too-short")
    user.find(marker="train-go").click()
    await until(lambda: c.training.phase == "failed", 30, "training to fail")
    await user.should_see("Training failed, the previous model stays active", retries=20)
    await user.should_see(c.training.error)
    assert c.detector is before
    assert not (app_paths.models_dir / "too-short.pt").exists()
    await user.should_see(f"active: {app_paths.model.stem}", retries=20)


async def test_training_needs_a_capture_and_a_valid_name(user: User, tmp_path: Path) -> None:
    await user.open("/training")
    assert not user.find(marker="train-go").elements.pop().enabled
    await capture_file(user, small_pcap(tmp_path / "some.pcap", 500))
    await user.should_see("500", retries=20)
    user.find(marker="train-name").clear().type("bad name!")
    user.find(marker="train-go").click()
    await user.should_see("a model name uses letters, digits", retries=20)


async def test_a_live_training_capture_counts_packets(user: User) -> None:
    import socket

    await user.open("/training")
    user.find(marker="train-interface").elements.pop().set_value("lo")
    user.find(marker="train-bpf").type("udp port 50998")
    user.find(marker="train-start-capture").click()
    c = controller_of_app()
    await until(lambda: c.training.phase == "capturing" and c.live.running, 10, "capturing")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for _ in range(100):
            s.sendto(b"y" * 64, ("127.0.0.1", 50998))
    await until(lambda: c.training.packets >= 100, 10, "collected packets")
    await user.should_see(f"{c.training.packets:,}", retries=20)
    await c.stop()


async def test_cancelling_a_training_keeps_the_previous_model(
        user: User, app_paths: AppPaths, tmp_path: Path) -> None:  # noqa: F811
    await user.open("/training")
    await capture_file(user, small_pcap(tmp_path / "normal.pcap", 10_000))
    c = controller_of_app()
    before = c.detector
    user.find(marker="train-name").clear().type("never")
    user.find(marker="train-epochs").elements.pop().set_value(200)
    user.find(marker="train-go").click()
    # the child process imports torch before its first epoch: allow a busy machine
    await until(lambda: c.training.phase == "training" and len(c.training.history) >= 1, 180,
                "the first epoch")
    await until(lambda: user.find(marker="train-cancel").elements.pop().enabled, 5,
                "cancel to be offered")
    user.find(marker="train-cancel").click()
    await until(lambda: c.training.phase == "failed", 60, "training to stop")
    await user.should_see("Training failed, the previous model stays active", retries=20)
    assert c.detector is before and not (app_paths.models_dir / "never.pt").exists()
