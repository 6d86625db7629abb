"""The dashboard's state shows behaviour detections: a password guesser's packets, normal to
the packet model, count as anomalous, top the score chart and make one brute-force event."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from netids.config import PROJECT_ROOT, Settings
from netids.controller import Controller


async def test_guessing_packets_are_anomalous_live_with_the_behaviour_event_alone(
        tmp_path: Path, shared_data: Path) -> None:
    settings = replace(Settings(), db_url=f"sqlite:///{tmp_path / 'c.sqlite'}",
                       model_path=PROJECT_ROOT / "models" / "default.pt")
    controller = Controller(settings)
    controller.open()
    try:
        await controller.start_file(shared_data / "attack" / "zeek__sshguess.pcap")
        await controller.wait()
        live = controller.live
        assert live.error == "" and live.packets == 431
        assert live.anomalies > 0  # the packet model alone flags none of this capture
        assert max(live.timeline.max_score) >= live.threshold
        assert sum(live.timeline.anomalies) == live.anomalies
        assert [e.kind for e in {e.id: e for e in live.events}.values()] == ["brute force"]
    finally:
        await controller.close()
